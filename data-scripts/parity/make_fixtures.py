#!/usr/bin/env python3
"""Build the parity fixtures for vl-distill's Rust re-implementations.

Small, randomly initialised models are built in the Python reference libraries
(timm for image towers, transformers for text encoders); their weights, a fixed
input and the reference outputs are written under tests/fixtures/parity/ so
Rust tests can check that our candle implementations match to 1e-4 in f32.

Everything is deterministic (a fixed seed per fixture), float32, CPU, eval mode,
under torch.no_grad(). Nothing is downloaded: every model is built from a config
and every tokenizer from a vocabulary written here.

Run with the pinned environment (see README.md next to this file):
    python data-scripts/parity/make_fixtures.py
The output directory is deleted and rewritten on every run.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import math
import os
import shutil
import sys
import time
from pathlib import Path

# Make the CPU numerics reproducible and keep the 2-core machine usable.
os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

import numpy as np  # noqa: E402
import safetensors  # noqa: E402
import timm  # noqa: E402
import tokenizers  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import transformers  # noqa: E402
from safetensors import safe_open  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from timm.models import nfnet as timm_nfnet  # noqa: E402

transformers.utils.logging.disable_progress_bar()

REPO_ROOT = Path(__file__).resolve().parents[2]
OUT_DIR = REPO_ROOT / "tests" / "fixtures" / "parity"

NUM_CLASSES = 10
SENTENCES = [
    "A red circle above a blue square.",
    "Two dogs",
    "the QUICK brown fox jumps over the lazy dog!",
    "unaffable zebras",
]

VERSIONS = {
    "torch_version": torch.__version__,
    "timm_version": timm.__version__,
    "transformers_version": transformers.__version__,
    "tokenizers_version": tokenizers.__version__,
    "safetensors_version": safetensors.__version__,
    "numpy_version": np.__version__,
}


# ----------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------

def log(msg: str) -> None:
    print(msg, flush=True)


def jsonable(x):
    """Convert tuples, dtypes, torch.Size and the like into JSON values."""
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, (str, int, float, bool)) or x is None:
        return x
    if isinstance(x, torch.dtype):
        return str(x).replace("torch.", "")
    if isinstance(x, torch.Size):
        return list(x)
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.floating,)):
        return float(x)
    return str(x)


def _is_leafy(x) -> bool:
    """A scalar, or a list of scalars / lists of scalars: printed on one line."""
    if isinstance(x, list):
        return all(not isinstance(v, (dict, list)) or (isinstance(v, list) and _is_leafy(v)) for v in x)
    return not isinstance(x, dict)


def _dumps(x, level: int = 0) -> str:
    """json.dumps(indent=2), except that short leaf lists (shapes, [key, shape] records) stay on one line."""
    pad, pad1 = "  " * level, "  " * (level + 1)
    if isinstance(x, dict):
        if not x:
            return "{}"
        items = [f"{pad1}{json.dumps(k)}: {_dumps(v, level + 1)}" for k, v in x.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(x, list) and x and not _is_leafy(x) or (isinstance(x, list) and len(json.dumps(x)) > 100):
        return "[\n" + ",\n".join(pad1 + _dumps(v, level + 1) for v in x) + "\n" + pad + "]"
    return json.dumps(x, ensure_ascii=False)


def write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = _dumps(jsonable(obj))
    assert json.loads(text) == jsonable(obj)
    path.write_text(text + "\n", encoding="utf-8")


def save_tensors(path: Path, tensors: dict) -> None:
    """save_file with every tensor contiguous, float32 (int64 for integer ids)."""
    out = {}
    for k, v in tensors.items():
        v = v.detach().cpu()
        if v.is_floating_point():
            v = v.to(torch.float32)
        else:
            v = v.to(torch.int64)
        out[k] = v.contiguous().clone()
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(out, str(path))


def check_output(name: str, t: torch.Tensor, min_std: float = 1e-3) -> dict:
    """Outputs must be finite and not trivially small; returns summary stats."""
    t = t.detach().float()
    assert torch.isfinite(t).all(), f"{name}: non-finite values"
    std = t.std().item()
    amax = t.abs().max().item()
    assert std > min_std, f"{name}: output std {std} is too small"
    return {"shape": list(t.shape), "std": round(std, 6), "abs_max": round(amax, 6)}


def fan_in(t: torch.Tensor) -> int:
    return max(1, t[0].numel()) if t.ndim >= 2 else max(1, t.numel())


NORM_TYPES = (nn.LayerNorm, nn.GroupNorm, nn.BatchNorm1d, nn.BatchNorm2d)


@torch.no_grad()
def randomise_(model: nn.Module, seed: int, embed_std: float = 0.5) -> dict:
    """Re-randomise EVERY floating-point parameter and buffer with a seeded generator.

    timm / transformers initialise some tensors to exact zeros / ones (NF conv3
    gain = 0 when skipinit is False, biases = 0, LayerNorm = 1/0, ViT cls_token ~1e-6),
    which would let a broken code path go unnoticed. Rules:
      * norm weights and NF conv `gain`:      1 + 0.1 * randn
      * biases and other 1-d tensors:         0.1 * randn
      * ViT cls_token / pos_embed / reg_token: 0.02 * randn
      * nn.Embedding tables:                  embed_std * randn
      * other weights (Linear, Conv):         randn / sqrt(fan_in)
    Integer buffers (e.g. BERT position_ids) are index tables, not weights: left as is.
    Returns a record of which rule was applied to which tensor.
    """
    g = torch.Generator().manual_seed(seed)
    rules: dict[str, str] = {}
    for mod_name, mod in model.named_modules():
        tensors = [(n, p, False) for n, p in mod.named_parameters(recurse=False)]
        tensors += [(n, b, True) for n, b in mod.named_buffers(recurse=False)]
        for pname, p, is_buffer in tensors:
            full = f"{mod_name}.{pname}" if mod_name else pname
            if not p.is_floating_point():
                rules[full] = "kept (integer buffer)"
                continue
            rnd = torch.randn(p.shape, generator=g, dtype=torch.float32)
            if (isinstance(mod, NORM_TYPES) and pname == "weight") or pname in ("gain", "skipinit_gain"):
                val, rule = 1.0 + 0.1 * rnd, "1+0.1*randn"
            elif pname in ("cls_token", "pos_embed", "reg_token"):
                val, rule = 0.02 * rnd, "0.02*randn"
            elif isinstance(mod, nn.Embedding):
                val, rule = embed_std * rnd, f"{embed_std}*randn"
            elif pname == "bias" or p.ndim <= 1:
                val, rule = 0.1 * rnd, "0.1*randn"
            else:
                val, rule = rnd / math.sqrt(fan_in(p)), "randn/sqrt(fan_in)"
            p.copy_(val.to(p.dtype))
            rules[full] = rule + (" (buffer)" if is_buffer else "")
    return rules


def state_dict_record(model: nn.Module) -> dict:
    """Names / shapes of a model's state_dict, in order, with buffers marked."""
    sd = model.state_dict()
    param_names = {n for n, _ in model.named_parameters(remove_duplicate=False)}
    buffer_names = {n for n, _ in model.named_buffers(remove_duplicate=False)}
    params = [[k, list(v.shape)] for k, v in sd.items()]
    buffers = [[k, list(v.shape), jsonable(v.dtype)] for k, v in sd.items() if k in buffer_names]
    non_persistent = [
        [n, list(b.shape), jsonable(b.dtype)] for n, b in model.named_buffers() if n not in sd
    ]
    unknown = [k for k in sd if k not in param_names and k not in buffer_names]
    assert not unknown, unknown
    return {
        "num_params": int(sum(p.numel() for p in model.parameters())),
        "state_dict_numel": int(sum(v.numel() for v in sd.values())),
        "params": params,
        "buffers": buffers,
        "non_persistent_buffers": non_persistent,
    }


def f64_max_diff(model: nn.Module, fn, ref: torch.Tensor) -> float:
    """Max |f32 - f64| of the same computation: the numerical noise floor."""
    import copy

    m64 = copy.deepcopy(model).double()
    out = fn(m64).float()
    return float((out - ref).abs().max().item())


def dir_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


# ----------------------------------------------------------------------------
# timm image towers
# ----------------------------------------------------------------------------

def nf_cfg_for(timm_name: str, overrides: dict):
    """The exact NfCfg NormFreeNet builds: replace(model_cfgs[name], **overrides)."""
    return dataclasses.replace(timm_nfnet.model_cfgs[timm_name], **overrides)


def nf_derived(model: nn.Module) -> dict:
    """Resolved per-layer facts of a NormFreeNet (channel rounding, groups, gammas...)."""
    def conv_rec(c):
        rec = {
            "in": c.in_channels, "out": c.out_channels, "k": c.kernel_size[0],
            "stride": c.stride[0], "padding": c.padding if isinstance(c.padding, str) else c.padding[0],
            "dilation": c.dilation[0], "groups": c.groups, "bias": c.bias is not None,
        }
        if hasattr(c, "scale"):
            fi = c.weight[0].numel()
            rec.update({"eps": c.eps, "fan_in": fi, "gamma": round(c.scale * math.sqrt(fi), 10)})
        return rec

    def act_rec(a):
        if a is None:
            return None
        rec = {"type": type(a).__name__}
        if hasattr(a, "gamma"):
            rec["gamma"] = a.gamma
        return rec

    def attn_rec(a):
        if a is None:
            return None
        rec = {"type": type(a).__name__}
        if hasattr(a, "fc1"):
            rec.update({"channels": a.fc1.in_channels, "rd_channels": a.fc1.out_channels,
                        "act": type(a.act).__name__, "gate": type(a.gate).__name__})
        if hasattr(a, "conv") and isinstance(a.conv, nn.Conv1d):
            rec.update({"kernel_size": a.conv.kernel_size[0]})
        return rec

    stem = []
    for n, m in model.stem.named_children():
        if isinstance(m, nn.Conv2d):
            stem.append({"name": n, **conv_rec(m)})
        elif isinstance(m, nn.MaxPool2d):
            stem.append({"name": n, "type": "MaxPool2d", "k": m.kernel_size, "stride": m.stride,
                         "padding": m.padding, "ceil_mode": m.ceil_mode})
        else:
            stem.append({"name": n, **act_rec(m)})
    blocks = []
    for si, stage in enumerate(model.stages):
        for bi, b in enumerate(stage):
            ds = None
            if b.downsample is not None:
                pool = b.downsample.pool
                ds = {"conv": conv_rec(b.downsample.conv)}
                if isinstance(pool, nn.AvgPool2d):
                    ds["pool"] = {"type": "AvgPool2d", "k": pool.kernel_size, "stride": pool.stride,
                                  "ceil_mode": pool.ceil_mode, "count_include_pad": pool.count_include_pad}
                else:
                    ds["pool"] = {"type": type(pool).__name__}
            blocks.append({
                "name": f"stages.{si}.{bi}",
                "alpha": b.alpha, "beta": b.beta, "attn_gain": b.attn_gain,
                "act1": act_rec(b.act1),
                "conv1": conv_rec(b.conv1), "conv2": conv_rec(b.conv2),
                "conv2b": conv_rec(b.conv2b) if b.conv2b is not None else None,
                "attn_mid": attn_rec(b.attn), "conv3": conv_rec(b.conv3),
                "attn_last": attn_rec(b.attn_last),
                "downsample": ds,
                "skipinit_gain": b.skipinit_gain is not None,
            })
    final_conv = conv_rec(model.final_conv) if isinstance(model.final_conv, nn.Conv2d) else None
    return {
        "stem": stem,
        "blocks": blocks,
        "final_conv": final_conv,
        "final_act": act_rec(model.final_act),
        "num_features": model.num_features,
        "head": {"pool": "avg (mean over H,W)", "fc_in": model.head.fc.in_features,
                 "fc_out": model.head.fc.out_features},
    }


def nf_derived_compact(model: nn.Module) -> dict:
    """nf_derived, one line per block (for the full-size records, to keep them small)."""
    d = nf_derived(model)
    cols = ["name", "in", "mid", "out", "groups", "stride", "beta", "downsample", "attn", "attn_rd_channels_or_eca_k", "conv2b"]
    rows = []
    for b in d["blocks"]:
        attn = b["attn_mid"] or b["attn_last"]
        rows.append([b["name"], b["conv1"]["in"], b["conv1"]["out"], b["conv3"]["out"], b["conv2"]["groups"],
                     b["conv2"]["stride"], b["beta"], b["downsample"] is not None,
                     None if attn is None else ("mid" if b["attn_mid"] else "last") + ":" + attn["type"],
                     None if attn is None else attn.get("rd_channels", attn.get("kernel_size")),
                     b["conv2b"] is not None])
    c0 = d["blocks"][0]["conv1"]
    return {
        "stem": d["stem"], "alpha": d["blocks"][0]["alpha"], "attn_gain": d["blocks"][0]["attn_gain"],
        "conv_eps": c0["eps"], "conv_gamma": c0["gamma"], "block_columns": cols, "blocks": rows,
        "final_conv": d["final_conv"], "final_act": d["final_act"], "num_features": d["num_features"],
    }


def vit_resolved(model: nn.Module) -> dict:
    """Architecture facts read back from a built timm VisionTransformer."""
    blk = model.blocks[0]
    act = blk.mlp.act
    return {
        "img_size": list(model.patch_embed.img_size),
        "patch_size": list(model.patch_embed.patch_size),
        "embed_dim": model.embed_dim,
        "depth": len(model.blocks),
        "num_heads": blk.attn.num_heads,
        "head_dim": blk.attn.head_dim,
        "mlp_hidden": blk.mlp.fc1.out_features,
        "mlp_ratio": blk.mlp.fc1.out_features / model.embed_dim,
        "qkv_bias": blk.attn.qkv.bias is not None,
        "proj_bias": blk.attn.proj.bias is not None,
        "patch_embed_bias": model.patch_embed.proj.bias is not None,
        "class_token": model.cls_token is not None,
        "reg_tokens": model.num_reg_tokens,
        "num_prefix_tokens": model.num_prefix_tokens,
        "no_embed_class": model.no_embed_class,
        "pos_embed_shape": list(model.pos_embed.shape),
        "global_pool": model.global_pool,
        "num_classes": model.num_classes,
        "num_features": model.num_features,
        "norm_pre_used": not isinstance(model.norm_pre, nn.Identity),
        "final_norm_used": not isinstance(model.norm, nn.Identity),
        "fc_norm_used": not isinstance(model.fc_norm, nn.Identity),
        "norm_type": type(blk.norm1).__name__,
        "norm_eps": blk.norm1.eps,
        "final_norm_eps": getattr(model.norm, "eps", None),
        "layer_scale": not isinstance(blk.ls1, nn.Identity),
        "qk_norm": not isinstance(blk.attn.q_norm, nn.Identity),
        "attn_scale": blk.attn.scale,
        "fused_attn": bool(blk.attn.fused_attn),
        "mlp_act": type(act).__name__ + (f"(approximate={act.approximate!r})" if hasattr(act, "approximate") else ""),
        "block_order": "x = x + attn(norm1(x)); x = x + mlp(norm2(x))",
    }


def vit_flat(model: nn.Module) -> dict:
    """Flat VisionTransformer kwargs (defaults made explicit) that rebuild this architecture."""
    r = vit_resolved(model)
    assert r["img_size"][0] == r["img_size"][1] and r["patch_size"][0] == r["patch_size"][1]
    assert r["mlp_act"] == "GELU(approximate='none')" and r["norm_type"] == "LayerNorm"
    return {
        "img_size": r["img_size"][0], "patch_size": r["patch_size"][0], "embed_dim": r["embed_dim"],
        "depth": r["depth"], "num_heads": r["num_heads"], "mlp_ratio": r["mlp_ratio"],
        "qkv_bias": r["qkv_bias"], "class_token": r["class_token"], "global_pool": r["global_pool"],
        "num_classes": r["num_classes"], "reg_tokens": r["reg_tokens"], "no_embed_class": r["no_embed_class"],
        "pre_norm": r["norm_pre_used"], "final_norm": r["final_norm_used"], "fc_norm": r["fc_norm_used"],
        "norm_eps": r["norm_eps"], "act": "gelu (exact, erf)", "init_values": None, "qk_norm": r["qk_norm"],
    }


def build_image_fixture(name: str, timm_name: str, seed: int, image_size: int, kwargs: dict,
                        nf_overrides: dict | None, weights_from: str | None = None) -> None:
    t0 = time.time()
    torch.manual_seed(seed)
    model = timm.create_model(timm_name, pretrained=False, num_classes=NUM_CLASSES, **kwargs)
    model = model.float().eval()
    rules = randomise_(model, seed)
    g = torch.Generator().manual_seed(seed + 1000)
    x = torch.randn(2, 3, image_size, image_size, generator=g)
    with torch.no_grad():
        feats_map = model.forward_features(x)
        features = model.forward_head(feats_map, pre_logits=True)
        logits = model(x)
        # the two ways of getting the logits must agree exactly
        assert torch.equal(model.forward_head(feats_map), logits)
        diff64 = f64_max_diff(model, lambda m: m(x.double()), logits)
    stats = {
        "forward_features": check_output(f"{name}.forward_features", feats_map),
        "features": check_output(f"{name}.features", features),
        "logits": check_output(f"{name}.logits", logits),
        "logits_f32_vs_f64_max_abs_diff": diff64,
    }
    d = OUT_DIR / name
    d.mkdir(parents=True, exist_ok=True)
    if weights_from is None:
        save_tensors(d / "weights.safetensors", model.state_dict())
    else:  # same seed => identical weights; not duplicated on disk (fixture size budget)
        with safe_open(str(OUT_DIR / weights_from / "weights.safetensors"), "pt") as f:
            sd = model.state_dict()
            assert list(f.keys()) == sorted(sd.keys()) or set(f.keys()) == set(sd.keys())
            assert all(torch.equal(f.get_tensor(k), sd[k]) for k in sd), "weights differ from " + weights_from
    save_tensors(d / "io.safetensors", {
        "input": x, "features": features, "logits": logits, "forward_features": feats_map,
    })
    cfg = {
        "fixture": name,
        "arch": type(model).__name__,
        "timm_model": timm_name,
        "timm_version": timm.__version__,
        "torch_version": torch.__version__,
        "seed": seed,
        "image_size": image_size,
        "num_classes": NUM_CLASSES,
        "num_features": int(features.shape[-1]),
        "create_model_kwargs": kwargs,
        "io_keys": {
            "input": "randn [2, 3, S, S]",
            "forward_features": "model.forward_features(input) (after final_conv/final_act for NF, after final norm for ViT)",
            "features": "model.forward_head(model.forward_features(input), pre_logits=True)",
            "logits": "model(input)",
        },
        "weights_randomisation": sorted(set(rules.values())),
        "stats": stats,
    }
    if weights_from:
        cfg["same_weights_as"] = weights_from
        cfg["weights"] = f"../{weights_from}/weights.safetensors"
    else:
        cfg["weights"] = "weights.safetensors"
    if nf_overrides is not None:
        nf_cfg = nf_cfg_for(timm_name, nf_overrides)
        cfg["nf_overrides"] = nf_overrides
        cfg["cfg"] = dataclasses.asdict(nf_cfg)
        cfg["derived"] = nf_derived(model)
    else:
        cfg["vit"] = vit_flat(model)
        for k, v in kwargs.items():  # the kwargs passed must be what the model reports
            assert cfg["vit"][k] == v, (k, cfg["vit"][k], v)
        cfg["vit_resolved"] = vit_resolved(model)
    write_json(d / "config.json", cfg)
    log(f"  {name}: logits {tuple(logits.shape)} std={stats['logits']['std']:.4f} "
        f"f64diff={diff64:.2e} ({time.time() - t0:.1f}s)")
    return model


def build_image_fixtures() -> None:
    nf_res_over = dict(depths=(1, 1, 1, 1), channels=(32, 64, 128, 256), stem_chs=16)
    build_image_fixture("nf_resnet50_scaled", "nf_resnet50", 101, 32, nf_res_over, nf_res_over)
    # odd image size, same seed => bit-identical weights
    build_image_fixture("nf_resnet50_scaled_odd", "nf_resnet50", 101, 33, nf_res_over, nf_res_over,
                        weights_from="nf_resnet50_scaled")

    nf_reg_over = dict(depths=(1, 1, 1, 1), channels=(16, 32, 48, 64), num_features=128)
    build_image_fixture("nf_regnet_b1_scaled", "nf_regnet_b1", 102, 32, nf_reg_over, nf_reg_over)

    nfnet_over = dict(depths=(1, 1, 1, 1), channels=(64, 128, 192, 192), group_size=16, stem_chs=16,
                      num_features=288)
    build_image_fixture("nfnet_l0_scaled", "nfnet_l0", 103, 32, nfnet_over, nfnet_over)

    # Not in the original brief: with depths (1,1,1,1) every block above has a downsample shortcut,
    # so the identity shortcut (`shortcut = x`, the raw input, not act1(x) * beta) and the
    # within-stage accumulation of expected_var (beta = 1/sqrt(1 + k * alpha^2)) are never run.
    # This small extra fixture has 3 blocks in stage 1 to cover both.
    deep_over = dict(depths=(1, 3, 1, 1), channels=(16, 32, 48, 64), group_size=8, stem_chs=16,
                     num_features=96)
    build_image_fixture("nfnet_l0_deep", "nfnet_l0", 105, 32, deep_over, deep_over)

    vit_kwargs = dict(img_size=32, patch_size=8, embed_dim=64, depth=2, num_heads=2)
    build_image_fixture("vit_scaled", "vit_tiny_patch16_224", 104, 32, vit_kwargs, None)


# ----------------------------------------------------------------------------
# transformers text encoders
# ----------------------------------------------------------------------------

BERT_VOCAB = (
    ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    + [".", ",", "!", "?", "-", "'"]
    + ["a", "an", "the", "one", "two", "three", "red", "green", "blue", "yellow", "circle", "triangle",
       "squ", "##are", "above", "below", "left", "right", "of", "and", "is", "dog", "cat", "##s", "##es",
       "quick", "slow", "brown", "jump", "##ed", "##ing", "over", "under", "un", "##aff", "##able",
       "zebra", "##a", "##b", "##e", "##r", "photo", "picture", "small", "large"]
)
# Not in the vocabulary on purpose: "fox" and "lazy" (=> [UNK]); "square" -> squ ##are,
# "dogs" -> dog ##s, "jumps" -> jump ##s, "unaffable" -> un ##aff ##able, "zebras" -> zebra ##s.


def make_bert_tokenizer(model_dir: Path):
    from transformers import BertTokenizerFast

    model_dir.mkdir(parents=True, exist_ok=True)
    vocab_path = model_dir / "vocab.txt"
    vocab_path.write_text("\n".join(BERT_VOCAB) + "\n", encoding="utf-8")
    # NB transformers 5.x: BertTokenizerFast is an alias of the tokenizers-backed BertTokenizer,
    # and its `vocab_file=` keyword is silently ignored (you get a 5-token vocab); the vocabulary
    # must be passed as `vocab=` (a path or a dict).
    tok = BertTokenizerFast(vocab=str(vocab_path), do_lower_case=True)
    assert tok.vocab_size == len(BERT_VOCAB), (tok.vocab_size, len(BERT_VOCAB))
    tok.model_max_length = 64
    tok.save_pretrained(str(model_dir))
    return tok


def save_hf_model(model, model_dir: Path) -> None:
    params = inspect.signature(model.save_pretrained).parameters
    if "safe_serialization" in params:
        model.save_pretrained(str(model_dir), safe_serialization=True)
    else:  # transformers 5.x always writes safetensors and dropped the argument
        model.save_pretrained(str(model_dir))
    assert (model_dir / "model.safetensors").is_file()


def safetensors_keys(path: Path) -> list:
    with safe_open(str(path), "pt") as f:
        return [[k, list(f.get_slice(k).get_shape())] for k in f.keys()]


def masked_mean(h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask.unsqueeze(-1).to(h.dtype)
    return (h * m).sum(1) / m.sum(1).clamp(min=1e-9)


def bert_config(vocab_size: int):
    from transformers import BertConfig

    return BertConfig(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                      intermediate_size=64, max_position_embeddings=64)


def build_bert_fixture(name: str, seed: int, sentence_transformers_layout: bool) -> None:
    from transformers import BertModel, BertTokenizerFast

    t0 = time.time()
    d = OUT_DIR / name
    model_dir = d / "model"
    tok = make_bert_tokenizer(model_dir)
    torch.manual_seed(seed)
    model = BertModel(bert_config(len(BERT_VOCAB))).float().eval()
    rules = randomise_(model, seed)
    save_hf_model(model, model_dir)

    enc = tok(SENTENCES, padding=True, truncation=True, max_length=64, return_tensors="pt")
    # the saved folder must reproduce the same ids and the same model
    tok2 = BertTokenizerFast.from_pretrained(str(model_dir))
    enc2 = tok2(SENTENCES, padding=True, truncation=True, max_length=64, return_tensors="pt")
    assert torch.equal(enc["input_ids"], enc2["input_ids"])
    raw = tokenizers.Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    for s, ids, m in zip(SENTENCES, enc["input_ids"], enc["attention_mask"]):
        assert raw.encode(s).ids == ids[m.bool()].tolist()
    model2 = BertModel.from_pretrained(str(model_dir)).float().eval()

    with torch.no_grad():
        out = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"],
                    token_type_ids=enc["token_type_ids"])
        out2 = model2(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"])
        h = out.last_hidden_state
        assert torch.equal(h, out2.last_hidden_state), "reloaded model differs"
        diff64 = f64_max_diff(model, lambda m: m(input_ids=enc["input_ids"],
                                                  attention_mask=enc["attention_mask"]).last_hidden_state, h)
    cls = h[:, 0]
    mean = masked_mean(h, enc["attention_mask"])
    mean_n = F.normalize(mean, dim=-1)
    stats = {
        "last_hidden_state": check_output("last_hidden_state", h),
        "pooler_output": check_output("pooler_output", out.pooler_output),
        "mean": check_output("mean", mean),
        "last_hidden_state_f32_vs_f64_max_abs_diff": diff64,
    }
    save_tensors(d / "expected.safetensors", {
        "input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"],
        "token_type_ids": enc["token_type_ids"],
        "last_hidden_state": h, "cls": cls, "mean": mean, "mean_normalized": mean_n,
        "pooler_output": out.pooler_output,
    })

    st_check = None
    if sentence_transformers_layout:
        write_sentence_transformers_files(model_dir, hidden=model.config.hidden_size)
        st_check = cross_check_sentence_transformers(model_dir, mean_n)

    sd_keys = list(model.state_dict().keys())
    saved = safetensors_keys(model_dir / "model.safetensors")
    write_json(d / "expected.json", {
        "fixture": name,
        "sentences": SENTENCES,
        "tokens": [tok.convert_ids_to_tokens(ids[m.bool()].tolist())
                   for ids, m in zip(enc["input_ids"], enc["attention_mask"])],
        "seed": seed,
        **VERSIONS,
        "tokenizer_call": "tok(sentences, padding=True, truncation=True, max_length=64)",
        "model_call": "BertModel(input_ids, attention_mask, token_type_ids)",
        "attn_implementation": model.config._attn_implementation,
        "keys": {
            "input_ids": "int64 [4, L]", "attention_mask": "int64 [4, L]", "token_type_ids": "int64 [4, L] (zeros)",
            "last_hidden_state": "[4, L, 32]", "cls": "last_hidden_state[:, 0]",
            "mean": "sum(h * mask) / clamp(sum(mask), 1e-9) over tokens",
            "mean_normalized": "F.normalize(mean, dim=-1) (p=2, eps=1e-12)",
            "pooler_output": "tanh(pooler.dense(h[:, 0]))",
        },
        "model_safetensors_keys": saved,
        "model_safetensors_keys_equal_state_dict": [k for k, _ in saved] == sd_keys
        or sorted(k for k, _ in saved) == sorted(sd_keys),
        "weights_randomisation": sorted(set(rules.values())),
        "stats": stats,
        **({"sentence_transformers_check": st_check} if st_check else {}),
    })
    log(f"  {name}: L={h.shape[1]} std={stats['last_hidden_state']['std']:.4f} "
        f"f64diff={diff64:.2e} ({time.time() - t0:.1f}s)")


def write_sentence_transformers_files(model_dir: Path, hidden: int) -> None:
    """The sentence-transformers files of a folder like all-MiniLM-L6-v2, written by hand.

    Same formats as that model card's files (sentence-transformers 2.x era, the legacy
    boolean pooling keys, which newer sentence-transformers still reads). As in the real
    all-MiniLM-L6-v2 folder, modules.json names `2_Normalize` but no such folder exists
    (Normalize has no weights or config; git cannot hold an empty folder anyway).
    """
    write_json(model_dir / "modules.json", [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
    ])
    write_json(model_dir / "1_Pooling" / "config.json", {
        "word_embedding_dimension": hidden,
        "pooling_mode_cls_token": False,
        "pooling_mode_mean_tokens": True,
        "pooling_mode_max_tokens": False,
        "pooling_mode_mean_sqrt_len_tokens": False,
    })
    write_json(model_dir / "sentence_bert_config.json", {"max_seq_length": 64, "do_lower_case": False})


def cross_check_sentence_transformers(model_dir: Path, mean_normalized: torch.Tensor) -> str:
    """If sentence-transformers happens to be importable (it is NOT in requirements.txt), load the
    folder with it and compare its embeddings with `mean_normalized`. Optional: skipped otherwise."""
    try:
        import sentence_transformers
        from sentence_transformers import SentenceTransformer
    except Exception:
        return "skipped (sentence-transformers not installed)"
    m = SentenceTransformer(str(model_dir), device="cpu")
    e = m.encode(SENTENCES, convert_to_tensor=True, batch_size=len(SENTENCES))
    diff = (e.float().cpu() - mean_normalized).abs().max().item()
    assert diff < 1e-5, diff
    return f"sentence-transformers {sentence_transformers.__version__}: encode() max abs diff {diff:.2e}"


# --- CLIP ---------------------------------------------------------------------

CLIP_BPE_CORPUS = [
    "a red circle", "a blue circle", "a red square", "a blue square", "two red circles",
    "a photo of a dog", "a photo of two dogs", "a photo of a cat", "the dog is brown",
    "the circle is above the square", "a square below a circle", "three blue squares",
    "the brown dog", "a dog over the square", "red and blue", "the red one", "the blue one",
]
CLIP_NUM_MERGES = 48
CLIP_MAX_LEN = 16


def bytes_to_unicode() -> list[str]:
    """GPT-2 / CLIP byte -> printable unicode table, in the order CLIP's vocab uses."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for c in cs]


def clip_normalizer_pretok():
    from tokenizers import Regex, normalizers, pre_tokenizers

    norm = normalizers.Sequence([normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "),
                                 normalizers.Lowercase()])
    pre = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""),
                             behavior="removed", invert=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False),
    ])
    return norm, pre


def train_clip_bpe() -> tuple[dict, list]:
    """A tiny CLIP-style vocabulary: 256 bytes, 256 bytes+</w>, learned merges, then
    <|startoftext|> (V-2) and <|endoftext|> (V-1), like the real CLIP vocab's layout.

    Merges are learned here with a plain BPE loop (most frequent adjacent pair, ties broken
    lexicographically) so the files are byte-identical from run to run; tokenizers' BpeTrainer
    breaks ties differently between runs. Words come from the CLIP normalizer + pre-tokenizer.
    """
    from collections import Counter

    alphabet = bytes_to_unicode()
    norm, pre = clip_normalizer_pretok()
    words = Counter()
    for line in CLIP_BPE_CORPUS:
        for w, _ in pre.pre_tokenize_str(norm.normalize_str(line)):
            words[tuple(w[:-1]) + (w[-1] + "</w>",)] += 1
    merges = []
    for _ in range(CLIP_NUM_MERGES):
        pairs = Counter()
        for w, n in words.items():
            for a, b in zip(w[:-1], w[1:]):
                pairs[(a, b)] += n
        if not pairs:
            break
        best = min(pairs, key=lambda p: (-pairs[p], p))
        merges.append(best)
        new_words = Counter()
        for w, n in words.items():
            out, i = [], 0
            while i < len(w):
                if i + 1 < len(w) and (w[i], w[i + 1]) == best:
                    out.append(w[i] + w[i + 1])
                    i += 2
                else:
                    out.append(w[i])
                    i += 1
            new_words[tuple(out)] += n
        words = new_words
    vocab_list = alphabet + [c + "</w>" for c in alphabet]
    seen = set(vocab_list)
    for a, b in merges:
        assert a in seen and b in seen, (a, b)
        if a + b not in seen:
            vocab_list.append(a + b)
            seen.add(a + b)
    vocab_list += ["<|startoftext|>", "<|endoftext|>"]
    vocab = {t: i for i, t in enumerate(vocab_list)}
    return vocab, merges


def build_clip_fixture(name: str, seed: int) -> None:
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection, CLIPTokenizer

    t0 = time.time()
    d = OUT_DIR / name
    model_dir = d / "model"
    model_dir.mkdir(parents=True, exist_ok=True)

    vocab, merges = train_clip_bpe()
    V = len(vocab)
    assert vocab["<|startoftext|>"] == V - 2 and vocab["<|endoftext|>"] == V - 1
    (model_dir / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False) + "\n", encoding="utf-8")
    (model_dir / "merges.txt").write_text("#version: 0.2\n" + "\n".join(f"{a} {b}" for a, b in merges) + "\n", encoding="utf-8")
    tok = CLIPTokenizer(vocab=vocab, merges=merges)  # the tokenizers-backed CLIP pipeline
    tok.model_max_length = 77
    tok.save_pretrained(str(model_dir))
    # the files on disk must give the same ids (vocab.json/merges.txt were written by hand above;
    # make sure save_pretrained kept them identical if it wrote them too)
    assert json.loads((model_dir / "vocab.json").read_text(encoding="utf-8")) == vocab

    enc = tok(SENTENCES, padding=True, truncation=True, max_length=CLIP_MAX_LEN, return_tensors="pt")
    ids, mask = enc["input_ids"], enc["attention_mask"]
    tok2 = CLIPTokenizer.from_pretrained(str(model_dir))
    enc2 = tok2(SENTENCES, padding=True, truncation=True, max_length=CLIP_MAX_LEN, return_tensors="pt")
    assert torch.equal(ids, enc2["input_ids"]) and torch.equal(mask, enc2["attention_mask"])
    raw = tokenizers.Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    raw_full = [raw.encode(s).ids for s in SENTENCES]
    for full, row, m in zip(raw_full, ids, mask):
        kept = row[m.bool()].tolist()
        if len(full) <= CLIP_MAX_LEN:
            assert kept == full, (kept, full)
        else:  # truncation keeps BOS + first 14 + EOS
            assert kept == full[: CLIP_MAX_LEN - 1] + [V - 1], (kept, full)
    assert (ids[:, 0] == V - 2).all()
    # padding uses the EOS id (as real CLIP tokenizers), so argmax(input_ids) hits the FIRST EOS
    first_eos = (ids == V - 1).int().argmax(-1)
    assert torch.equal(ids.argmax(-1), first_eos), "torch argmax must return the first maximal index"
    assert torch.equal(mask.sum(-1) - 1, first_eos), "first EOS must be the last attended token"

    cfg = CLIPTextConfig(vocab_size=V, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, max_position_embeddings=CLIP_MAX_LEN, projection_dim=24,
                         hidden_act="quick_gelu", bos_token_id=V - 2, eos_token_id=V - 1, pad_token_id=V - 1)
    torch.manual_seed(seed)
    model = CLIPTextModelWithProjection(cfg).float().eval()
    rules = randomise_(model, seed)
    save_hf_model(model, model_dir)
    model2 = CLIPTextModelWithProjection.from_pretrained(str(model_dir)).float().eval()

    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=mask)
        out_nm = model(input_ids=ids)  # causal mask only, as candle-transformers' CLIP text model
        out2 = model2(input_ids=ids, attention_mask=mask)
        h = out.last_hidden_state
        assert torch.equal(h, out2.last_hidden_state) and torch.equal(out.text_embeds, out2.text_embeds)
        pooled = model.text_model(input_ids=ids, attention_mask=mask).pooler_output
        rows = torch.arange(ids.shape[0])
        # pooling rule: hidden state at the first EOS (== argmax(input_ids) here)
        assert torch.equal(pooled, h[rows, first_eos])
        assert torch.equal(pooled, h[rows, ids.argmax(-1)])
        assert torch.allclose(model.text_projection(pooled), out.text_embeds, atol=0, rtol=0)
        # padding only changes the hidden states AT pad positions (causal attention)
        valid = mask.bool()
        no_mask_diff_valid = (h - out_nm.last_hidden_state)[valid].abs().max().item()
        no_mask_diff_embeds = (out.text_embeds - out_nm.text_embeds).abs().max().item()
        assert no_mask_diff_valid < 1e-5 and no_mask_diff_embeds < 1e-5
        diff64 = f64_max_diff(model, lambda m: m(input_ids=ids, attention_mask=mask).text_embeds, out.text_embeds)

    stats = {
        "last_hidden_state": check_output("last_hidden_state", h),
        "pooled": check_output("pooled", pooled),
        "text_embeds": check_output("text_embeds", out.text_embeds),
        "text_embeds_f32_vs_f64_max_abs_diff": diff64,
        "attention_mask_vs_none_max_abs_diff_on_valid_tokens": no_mask_diff_valid,
        "attention_mask_vs_none_max_abs_diff_text_embeds": no_mask_diff_embeds,
    }
    save_tensors(d / "expected.safetensors", {
        "input_ids": ids, "attention_mask": mask,
        "last_hidden_state": h, "pooled": pooled, "text_embeds": out.text_embeds,
        "last_hidden_state_no_mask": out_nm.last_hidden_state,
    })
    sd_keys = list(model.state_dict().keys())
    saved = safetensors_keys(model_dir / "model.safetensors")
    write_json(d / "expected.json", {
        "fixture": name,
        "sentences": SENTENCES,
        "tokens": [tok.convert_ids_to_tokens(r[m.bool()].tolist()) for r, m in zip(ids, mask)],
        "seed": seed,
        **VERSIONS,
        "vocab_size": V,
        "bos_token_id": V - 2,
        "eos_token_id": V - 1,
        "pad_token_id": V - 1,
        "bpe_corpus": CLIP_BPE_CORPUS,
        "num_merges": len(merges),
        "tokenizer_call": f"tok(sentences, padding=True, truncation=True, max_length={CLIP_MAX_LEN})",
        "model_call": "CLIPTextModelWithProjection(input_ids, attention_mask)",
        "attn_implementation": model.config._attn_implementation,
        "pooling": (
            "transformers CLIPTextModel: if config.eos_token_id == 2 (legacy configs) it pools at "
            "input_ids.argmax(-1); otherwise at (input_ids == eos_token_id).int().argmax(-1), i.e. the FIRST "
            "eos. Here eos = V-1 is the highest id and pads are eos, so both rules pick the same position "
            "(checked), and torch.argmax returns the first maximal index (checked)."
        ),
        "keys": {
            "input_ids": "int64 [4, L]", "attention_mask": "int64 [4, L]",
            "last_hidden_state": "[4, L, 32], after final_layer_norm, computed with attention_mask",
            "last_hidden_state_no_mask": "[4, L, 32], same without attention_mask (causal mask only): "
                                         "equal on attended positions, differs only at pad positions",
            "pooled": "pooler_output of text_model [4, 32]: last_hidden_state at the first eos",
            "text_embeds": "text_projection(pooled) [4, 24] (not normalised)",
        },
        "model_safetensors_keys": saved,
        "model_safetensors_keys_equal_state_dict": sorted(k for k, _ in saved) == sorted(sd_keys),
        "weights_randomisation": sorted(set(rules.values())),
        "stats": stats,
    })
    log(f"  {name}: V={V} L={ids.shape[1]} std={stats['text_embeds']['std']:.4f} "
        f"f64diff={diff64:.2e} ({time.time() - t0:.1f}s)")


# ----------------------------------------------------------------------------
# full-size name / shape records
# ----------------------------------------------------------------------------

def build_on_meta(fn):
    """Build on the meta device (names and shapes only, no memory, fast); CPU as fallback."""
    try:
        with torch.device("meta"):
            return fn(), "meta"
    except Exception as e:  # pragma: no cover - depends on library versions
        log(f"    meta build failed ({type(e).__name__}: {e}); building on CPU")
        return fn(), "cpu"


def full_size_records() -> dict:
    from transformers import BertConfig, BertModel, CLIPTextConfig, CLIPTextModelWithProjection

    rec = {"_versions": VERSIONS}
    for name in ["nf_resnet50", "nf_regnet_b1", "nfnet_l0", "eca_nfnet_l0"]:
        m, dev = build_on_meta(lambda: timm.create_model(name, pretrained=False))
        rec[name] = {
            "library": "timm", "timm_model": name, "built_on": dev,
            "num_classes": m.num_classes, "num_features": m.num_features,
            "cfg": dataclasses.asdict(timm_nfnet.model_cfgs[name]),
            "derived": nf_derived_compact(m),
            **state_dict_record(m),
        }
        log(f"  {name}: {rec[name]['num_params']:,} params")
    for name in ["vit_tiny_patch16_224", "vit_base_patch16_224"]:
        m, dev = build_on_meta(lambda: timm.create_model(name, pretrained=False))
        rec[name] = {
            "library": "timm", "timm_model": name, "built_on": dev,
            "num_classes": m.num_classes, "num_features": m.num_features,
            "vit": vit_flat(m),
            "vit_resolved": vit_resolved(m),
            **state_dict_record(m),
        }
        log(f"  {name}: {rec[name]['num_params']:,} params")

    bert_cfg = BertConfig()
    expect = dict(vocab_size=30522, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                  intermediate_size=3072, max_position_embeddings=512)
    for k, v in expect.items():
        assert getattr(bert_cfg, k) == v, (k, getattr(bert_cfg, k), v)
    minilm_cfg = BertConfig(hidden_size=384, num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536)
    clip_cfg = CLIPTextConfig(vocab_size=49408, hidden_size=512, num_attention_heads=8, num_hidden_layers=12,
                              intermediate_size=2048, max_position_embeddings=77, projection_dim=512,
                              hidden_act="quick_gelu")
    for name, cls, cfg, note in [
        ("bert-base-uncased", BertModel, bert_cfg,
         "BertModel(BertConfig()); the default config equals bert-base-uncased's dims (checked)"),
        ("all-MiniLM-L6-v2", BertModel, minilm_cfg, "BertModel, 6 layers, hidden 384, 12 heads, intermediate 1536"),
        ("clip-vit-base-patch32-text", CLIPTextModelWithProjection, clip_cfg,
         "CLIPTextModelWithProjection with the ViT-B/32 text config"),
    ]:
        m, dev = build_on_meta(lambda: cls(cfg))
        rec[name] = {
            "library": "transformers", "class": cls.__name__, "built_on": dev, "note": note,
            "config": cfg.to_dict(),
            **state_dict_record(m),
        }
        log(f"  {name}: {rec[name]['num_params']:,} params")
    return rec


# ----------------------------------------------------------------------------

def main() -> int:
    t_start = time.time()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    torch.use_deterministic_algorithms(True)
    torch.set_grad_enabled(False)
    log(f"versions: {VERSIONS}")
    log(f"writing {OUT_DIR}")
    if OUT_DIR.exists():
        shutil.rmtree(OUT_DIR)
    OUT_DIR.mkdir(parents=True)

    log("image fixtures (timm):")
    build_image_fixtures()
    log("text fixtures (transformers):")
    build_bert_fixture("bert_tiny", 201, sentence_transformers_layout=False)
    build_bert_fixture("minilm_style", 202, sentence_transformers_layout=True)
    build_clip_fixture("clip_text_tiny", 203)
    log("full-size records:")
    write_json(OUT_DIR / "full_size.json", full_size_records())

    total = dir_size(OUT_DIR)
    for sub in sorted(p for p in OUT_DIR.iterdir()):
        size = dir_size(sub) if sub.is_dir() else sub.stat().st_size
        log(f"  {sub.name:28s} {size / 1024:8.1f} KiB")
    log(f"total {total / 1024:.1f} KiB; {time.time() - t_start:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
