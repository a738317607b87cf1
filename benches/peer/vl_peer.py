#!/usr/bin/env python3
"""The PyTorch peer of vl-distill's benchmarks: the same work as ours, the way
the paper's reference code does it.

Set up (once, from the repository root; pinned versions):

    python3 -m venv .venv-peer
    .venv-peer/bin/pip install -r benches/peer/requirements.txt

`cargo bench --bench side_by_side` finds `.venv-peer/bin/python` (or the
interpreter named by VL_PEER_PYTHON) and calls this script; it is not meant to
be run by hand, but it can be:

    vl_peer.py check  IN.safetensors OUT.safetensors
    vl_peer.py outer  IN.safetensors REPS      # time one outer distillation step
    vl_peer.py epoch  IN.safetensors REPS      # time one expert epoch

IN is written by the Rust side: the student's start and target parameters
(`theta0/{image,text}/<name>`, `target/...`, the same names as our
`ParamSet`s, which follow PyTorch's module names), the synthetic images and
text embeddings, the minibatch indices of every student step, the student
learning rates and the temperature. `outer` reproduces
`vl_distill::distill::matching_gradient`: `syn_steps` SGD steps of the
two-tower model (ConvNet with instance norm + linear text tower, symmetric
InfoNCE), each through `torch.autograd.grad(..., create_graph=True)` so the
whole unroll stays one graph, then the bi-trajectory matching loss (each
tower's squared distance to the target over the expert's own displacement)
and one backward pass to the images, the text embeddings and both log
learning rates. `epoch` is one epoch of plain minibatch SGD over every pair.

Timing modes print one JSON line: per-repetition seconds, their median, the
process's peak resident memory (MiB, VmHWM) and the resident memory
before the work started. A failed allocation (see VL_PEER_MAX_GIB) prints
`"oom": true` instead of failing.
"""
import json
import os
import resource
import statistics
import sys
import time

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file


def peak_rss_mib():
    """VmHWM: the high-water mark of this process's resident memory (unlike
    getrusage's ru_maxrss it does not carry a parent's peak across exec)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def cap_memory():
    """Limits the data segment so a graph too large for the machine fails as
    an allocation error (reported) rather than by the kernel's OOM killer."""
    gib = float(os.environ.get("VL_PEER_MAX_GIB", "0"))
    if gib > 0:
        limit = int(gib * (1 << 30))
        resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))


def split(tensors, prefix):
    out = {"image": {}, "text": {}}
    for key, t in tensors.items():
        if key.startswith(prefix + "/"):
            _, tower, name = key.split("/", 2)
            out[tower][name] = t
    return out


def image_features(p, x):
    depth = sum(1 for k in p if k.startswith("features.") and k.endswith(".weight")) // 2
    h = x
    for i in range(depth):
        h = F.conv2d(h, p[f"features.{4 * i}.weight"], p[f"features.{4 * i}.bias"], padding=1)
        h = F.group_norm(h, h.shape[1], p[f"features.{4 * i + 1}.weight"],
                         p[f"features.{4 * i + 1}.bias"], eps=1e-5)
        h = F.relu(h)
        h = F.avg_pool2d(h, 2)
    return h.flatten(1)


def contrastive_loss(params, x, e, temperature):
    fi = F.normalize(image_features(params["image"], x), dim=-1, eps=1e-12)
    ft = F.normalize(F.linear(e, params["text"]["proj.weight"], params["text"]["proj.bias"]),
                     dim=-1, eps=1e-12)
    logits = fi @ ft.t() / temperature
    target = torch.arange(len(x))
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target))


def flat(params):
    return {(tower, k): v for tower in ("image", "text") for k, v in params[tower].items()}


def outer_step(inp):
    """One outer distillation step: returns (loss_image, loss_text, grads)."""
    theta0, target = split(inp, "theta0"), split(inp, "target")
    images = inp["images"].clone().requires_grad_(True)
    texts = inp["texts"].clone().requires_grad_(True)
    # the learning rates in the data's dtype (f64 in the parity check: an
    # f32 rounding here alone makes the two sides differ by ~1e-7)
    log_lr = torch.log(inp["lr"].to(images.dtype)).clone().requires_grad_(True)
    temperature = float(inp["temperature"])
    keys = list(flat(theta0).keys())
    student = [flat(theta0)[k].clone().requires_grad_(True) for k in keys]
    lr_of = [log_lr[0] if tower == "image" else log_lr[1] for tower, _ in keys]
    for idx in inp["batches"]:
        params = {"image": {}, "text": {}}
        for (tower, name), t in zip(keys, student):
            params[tower][name] = t
        loss = contrastive_loss(params, images[idx], texts[idx], temperature)
        grads = torch.autograd.grad(loss, student, create_graph=True)
        student = [p - torch.exp(a) * g for p, g, a in zip(student, grads, lr_of)]
    start, goal = flat(theta0), flat(target)
    terms = []
    for tower in ("image", "text"):
        num = sum(((p - goal[k]) ** 2).sum() for k, p in zip(keys, student) if k[0] == tower)
        den = sum(((start[k] - goal[k]) ** 2).sum() for k in keys if k[0] == tower)
        terms.append(num / den)
    total = terms[0] + terms[1]
    g_images, g_texts, g_log_lr = torch.autograd.grad(total, [images, texts, log_lr])
    return float(terms[0]), float(terms[1]), {
        "images": g_images, "texts": g_texts, "log_lr": g_log_lr}


def expert_epoch(inp):
    """One epoch of plain SGD (one rate per tower) over every pair."""
    params = {t: {k: v.clone().requires_grad_(True) for k, v in d.items()}
              for t, d in split(inp, "theta0").items()}
    images, texts, owner = inp["images"], inp["texts"], inp["owner"].long()
    lr = inp["lr"].tolist()
    batch = int(inp["batch_size"])
    temperature = float(inp["temperature"])
    order = torch.randperm(len(texts))
    for start in range(0, len(order), batch):
        idx = order[start:start + batch]
        if len(idx) < 2:
            continue
        loss = contrastive_loss(params, images[owner[idx]], texts[idx], temperature)
        leaves = [params[t][k] for t in ("image", "text") for k in params[t]]
        grads = torch.autograd.grad(loss, leaves)
        with torch.no_grad():
            for (tower, _), p, g in zip(
                    [(t, k) for t in ("image", "text") for k in params[t]], leaves, grads):
                p -= lr[0 if tower == "image" else 1] * g


def main():
    mode, path = sys.argv[1], sys.argv[2]
    threads = int(os.environ.get("VL_PEER_THREADS", "0"))
    if threads > 0:
        torch.set_num_threads(threads)
    inp = load_file(path)
    if mode == "check":
        li, lt, g = outer_step(inp)
        g["loss"] = torch.tensor([li, lt], dtype=torch.float64)
        save_file({k: v.contiguous() for k, v in g.items()}, sys.argv[3])
        return
    reps = int(sys.argv[3])
    work = {"outer": outer_step, "epoch": expert_epoch}[mode]
    before = peak_rss_mib()
    cap_memory()
    times = []
    try:
        for _ in range(reps):
            t = time.perf_counter()
            work(inp)
            times.append(time.perf_counter() - t)
    except (RuntimeError, MemoryError) as err:
        if "alloc" not in str(err).lower() and not isinstance(err, MemoryError):
            raise
        print(json.dumps({"oom": True, "peak_mib": peak_rss_mib(), "before_mib": before,
                          "threads": torch.get_num_threads()}))
        return
    print(json.dumps({"seconds": times, "median": statistics.median(times),
                      "peak_mib": peak_rss_mib(), "before_mib": before,
                      "threads": torch.get_num_threads(), "torch": torch.__version__}))


if __name__ == "__main__":
    main()
