#!/usr/bin/env python3
"""Record reference outputs of the pretrained EfficientNet-Lite0 with timm,
for tests/efficientnet.rs to match.

    python data-scripts/efficientnet/record_reference.py

Reads data/models/efficientnet-lite0/model.safetensors (written by
data-scripts/fetch_efficientnet_lite0.sh) and the photos in data/test-photos
(data-scripts/efficientnet/fetch_test_photos.sh); writes
tests/fixtures/efficientnet/reference.json.

The weights are loaded, renamed, into timm's `tf_efficientnet_lite0`
(TensorFlow "same" padding, batch-norm eps 1e-3, ReLU6: the TensorFlow model
they were converted from). Each photo is decoded to RGB, cut to its central
square, resized with area averaging (the separable matrix of
`area_matrix`, which the Rust test builds the same way) to SIDE x SIDE,
scaled as (pixel - 127) / 128, and classified in float32 on the CPU in eval
mode. Recorded per case: the SHA-256 of the decoded RGB bytes (so the Rust
side can tell a decoder difference from a model difference), the top-5
classes with their logits, the logits of a few fixed classes, and the sum and
L2 norm of the pooled 1280-d features.

Pinned environment: requirements.txt next to this file (Python 3.11).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "2")

import numpy as np  # noqa: E402
import PIL  # noqa: E402
import timm  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
WEIGHTS = ROOT / "data/models/efficientnet-lite0/model.safetensors"
PHOTOS = ROOT / "data/test-photos"
OUT = ROOT / "tests/fixtures/efficientnet/reference.json"

# (photo, side): the PNG photos at the model's 224 px, two also at small and odd
# sides. Not rocket.jpg: JPEG decoders may differ by a grey level here and there
# (the Rust `image` crate's did from Pillow's), which is not what parity tests.
CASES = [
    ("coffee.png", 224),
    ("chelsea.png", 224),
    ("astronaut.png", 224),
    ("coffee.png", 64),
    ("chelsea.png", 33),
]
# logits recorded for every case whatever the top-5
FIXED = [967, 281, 282, 285, 657, 0]
STAGES = [1, 2, 2, 3, 3, 4, 1]


def timm_name(name: str) -> str:
    """EfficientNet-PyTorch names -> timm's EfficientNet names."""
    top = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head",
           "_bn1": "bn2", "_fc": "classifier"}
    m = re.match(r"_blocks\.(\d+)\.(\w+)\.(.+)", name)
    if not m:
        head, rest = name.split(".", 1)
        return f"{top[head]}.{rest}"
    flat = [(s, i) for s, n in enumerate(STAGES) for i in range(n)]
    b = int(m.group(1))
    s, i = flat[b]
    if b == 0:  # depthwise-separable block: dw, bn, pw, bn
        parts = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw",
                 "_bn2": "bn2"}
    else:  # inverted residual: pw (expand), bn, dw, bn, pwl (project), bn
        parts = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw",
                 "_bn1": "bn2", "_project_conv": "conv_pwl", "_bn2": "bn3"}
    return f"blocks.{s}.{i}.{parts[m.group(2)]}.{m.group(3)}"


def area_matrix(src: int, dst: int) -> np.ndarray:
    """[dst, src] weights of area-averaging resampling: output pixel i
    averages the source interval [i*src/dst, (i+1)*src/dst), each source
    pixel weighted by its overlap."""
    w = np.zeros((dst, src))
    scale = src / dst
    for i in range(dst):
        a, b = i * scale, (i + 1) * scale
        for j in range(int(np.floor(a)), min(int(np.ceil(b)), src)):
            w[i, j] = min(b, j + 1) - max(a, j)
        w[i] /= w[i].sum()
    return w


def load(path: Path, side: int) -> tuple[np.ndarray, str]:
    rgb = np.asarray(Image.open(path).convert("RGB"))
    digest = hashlib.sha256(rgb.tobytes()).hexdigest()
    h, w, _ = rgb.shape
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    x = rgb[top:top + s, left:left + s].astype(np.float64)
    m = area_matrix(s, side)
    x = np.stack([m @ x[:, :, c] @ m.T for c in range(3)])
    return ((x - 127.0) / 128.0).astype(np.float32), digest


def main() -> None:
    for p in [WEIGHTS, PHOTOS]:
        if not p.exists():
            sys.exit(f"record_reference.py: {p} is missing: run the fetch scripts first")
    torch.set_num_threads(2)
    sd = {timm_name(k): v for k, v in load_file(str(WEIGHTS)).items()}
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    model.load_state_dict(sd, strict=True)
    model.eval()
    cases = []
    for photo, side in CASES:
        x, digest = load(PHOTOS / photo, side)
        with torch.no_grad():
            t = torch.from_numpy(x)[None]
            feats = model.forward_head(model.forward_features(t), pre_logits=True)[0]
            logits = model(t)[0]
        top = torch.topk(logits, 5)
        cases.append({
            "photo": photo,
            "side": side,
            "rgb_sha256": digest,
            "top5": [[int(i), float(v)] for v, i in zip(top.values, top.indices)],
            "fixed": [[c, float(logits[c])] for c in FIXED],
            "feature_sum": float(feats.sum()),
            "feature_l2": float(feats.norm()),
        })
        print(f"{photo} @ {side}: top-1 {cases[-1]['top5'][0]}", file=sys.stderr)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "recorded_with": {
            "timm": timm.__version__, "torch": torch.__version__.split("+")[0],
            "numpy": np.__version__, "pillow": PIL.__version__,
            "model": "timm tf_efficientnet_lite0, eval, float32, CPU",
        },
        "weights": "data/models/efficientnet-lite0/model.safetensors",
        "preprocess": "central square, area-average resize to side x side, (pixel - 127) / 128",
        "cases": cases,
    }
    # one line per case keeps the fixture short and its diffs readable
    head = json.dumps({k: v for k, v in doc.items() if k != "cases"}, indent=1)[:-2]
    body = ",\n  ".join(json.dumps(c) for c in cases)
    OUT.write_text(f'{head},\n "cases": [\n  {body}\n ]\n}}\n')
    print(f"record_reference.py: {len(cases)} cases -> {OUT}", file=sys.stderr)


if __name__ == "__main__":
    main()
