#!/usr/bin/env python3
"""Evidence for the architecture choices of EfficientNet-Lite0 (padding,
batch-norm eps, input scaling) from the weights themselves, with timm.

    python data-scripts/efficientnet/check_architecture.py

For each candidate (timm's tf_efficientnet_lite0 = TensorFlow "same"
padding, or efficientnet_lite0 = symmetric padding; eps 1e-3 or 1e-5;
inputs (x - 127)/128, (x - 127.5)/127.5 or ImageNet mean/std) it prints:

- how far the batch statistics of the activations entering each batch norm,
  over the test photos, are from the stored running statistics (mean over
  channels and layers of |batch mean - running mean| / running std): the
  network was trained with one padding and one input scaling, and its
  running statistics remember them;
- the softmax probability of espresso (967) on coffee.png and of the cat
  classes (281-285) on chelsea.png, and each photo's top-1.

Needs the fetched weights and photos (see README.md) and the environment of
requirements.txt. Prints only; writes nothing.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import timm
import torch
import torch.nn as nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from record_reference import PHOTOS, WEIGHTS, load, timm_name  # noqa: E402

from safetensors.torch import load_file  # noqa: E402

FILES = ["coffee.png", "chelsea.png", "astronaut.png", "rocket.jpg"]
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406])[:, None, None]
IMAGENET_STD = np.array([0.229, 0.224, 0.225])[:, None, None]
SCALINGS = {
    "(x-127)/128": lambda lite: lite,
    "(x-127.5)/127.5": lambda lite: (lite * 128 + 127 - 127.5) / 127.5,
    "imagenet mean/std": lambda lite: ((lite * 128 + 127) / 255 - IMAGENET_MEAN) / IMAGENET_STD,
}


def main() -> None:
    torch.set_num_threads(2)
    sd = {timm_name(k): v for k, v in load_file(str(WEIGHTS)).items()}
    # `load` returns (x - 127)/128; the other scalings are derived from it
    lite = [load(PHOTOS / f, 224)[0].astype(np.float64) for f in FILES]
    print("| model | eps | input | BN mean shift | p(espresso) | p(cat) | top-1 |")
    print("|---|---|---|---|---|---|---|")
    for name in ["tf_efficientnet_lite0", "efficientnet_lite0"]:
        for eps in [1e-3, 1e-5]:
            model = timm.create_model(name, pretrained=False)
            model.load_state_dict(sd)
            model.eval()
            norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
            for m in norms:
                m.eps = eps
            for label, scale in SCALINGS.items():
                x = torch.tensor(np.stack([scale(v) for v in lite]), dtype=torch.float32)
                shifts = []

                def hook(mod, inputs, _out):
                    ok = mod.running_var > 1e-6  # some channels are dead
                    mu = inputs[0].mean((0, 2, 3))
                    z = (mu - mod.running_mean)[ok] / mod.running_var[ok].sqrt()
                    shifts.append(float(z.abs().mean()))

                handles = [m.register_forward_hook(hook) for m in norms]
                with torch.no_grad():
                    p = model(x).softmax(1)
                for h in handles:
                    h.remove()
                top = ", ".join(str(int(i)) for i in p.argmax(1))
                print(
                    f"| {name} | {eps:g} | {label} | {np.mean(shifts):.4f} | "
                    f"{p[0, 967]:.3f} | {p[1, 281:286].sum():.3f} | {top} |"
                )


if __name__ == "__main__":
    main()
