#!/usr/bin/env bash
# Prepares the emoji captions dataset from the npm registry: emoji artwork in
# three independent styles with permissive licences (Twemoji, CC-BY 4.0; Noto
# Emoji, Apache-2.0; OpenMoji, CC BY-SA 4.0) and the Unicode CLDR English names
# and keywords, written in Karpathy's layout (dataset_emoji.json + images/,
# 64x64 RGB on white, up to 5 captions per image) with a LICENSES.md.
#
#   data-scripts/fetch_emoji.sh [--force] [--small N] [DEST]
#       DEST     default data/emoji (data/emoji-small with --small)
#       --small N, or EMOJI_SMALL=N: keep only N emoji identities (CI-sized)
#       --force  rebuild even when DEST is complete
#
# The split holds out emoji identities (~10% val, ~20% test; each held-out
# emoji in one style only): see data-scripts/emoji/build_dataset.py and
# data-scripts/README.md. Load it with
#   --set 'data.source={"kind":"karpathy","json":"data/emoji/dataset_emoji.json"}'
#
# Idempotent: a DEST whose marker (.complete) records this build (versions,
# options) and the right image count is left alone. Needs npm (`npm pack` of
# pinned versions, checked against their recorded SHA-512 integrity) and
# python3 with venv; Pillow, resvg-py and numpy (pinned) go into a virtual
# environment in the cache. Downloads (~150 MB of npm tarballs) are cached in
# ${XDG_CACHE_HOME:-~/.cache}/vl-distill/.
set -euo pipefail

# name version integrity (npm's dist.integrity) compressed-size
PACKAGES=(
    "emoji-datasource-twitter 16.0.0 sha512-7F+uCuHH+7Qnrc15P5tnbvKkg9E6tlzi4MnT2uW1RlN4pLYTza6cP/dstIfSDMtpjFLWuZewWg8jBbuL2eyELQ== 62MB"
    "emoji-datasource-google 16.0.0 sha512-ZRexfzs7MVoLnmzZmNsO4TKhnAJp5D++Vm6PpUpH/jEQQlemp3l88CjZ+DoZ2faM9R4QxZkOPJCoT8DlPhfQ3A== 74MB"
    "openmoji 17.0.0 sha512-EBnYrNGdcdw+OSXmENeNE1yBNRu6tOraTmoOyUbJkTmvT/+XETp8RZLSJFzD3lrPc5N9CzsyPnRTk0Vp4UaI9w== 4MB"
    "cldr-annotations-full 48.2.0 sha512-DV7A+rEcgUSNTRsVGNGqBZRmAkGfwhGHO5Q1dRwzBoBnVrHWp804JP7/QJdEc66iHmx3+zLWVIMCFLm0lW7PUQ== 7MB"
    "cldr-annotations-derived-full 48.2.0 sha512-log62km+AOzI7n/NEuNNFV0mg9DWnt67EYCh1RwxZq9dyRuyteB586LT83Ke8TchEfnwI9cIk2P31zO4nTvZmw== 4MB"
)
PY_REQUIREMENTS=(pillow==11.3.0 resvg-py==0.5.0 numpy==2.2.6)
FORMAT=2 # bump when build_dataset.py changes what it writes

usage() { sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//'; }
SMALL="${EMOJI_SMALL:-}"
FORCE=0
DEST=""
while [[ $# -gt 0 ]]; do
    case "$1" in
        --force) FORCE=1 ;;
        --small) [[ $# -ge 2 ]] || { echo "emoji: --small needs N" >&2; exit 2; }
                 SMALL="$2"; shift ;;
        --small=*) SMALL="${1#--small=}" ;;
        -h|--help) usage; exit 0 ;;
        -*) echo "emoji: unknown option $1" >&2; usage >&2; exit 2 ;;
        *) [[ -z "$DEST" ]] || { echo "emoji: more than one DEST" >&2; exit 2; }
           DEST="$1" ;;
    esac
    shift
done
if [[ -n "$SMALL" && ! "$SMALL" =~ ^[1-9][0-9]*$ ]]; then
    echo "emoji: --small / EMOJI_SMALL must be a positive number, got '$SMALL'" >&2
    exit 2
fi
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
if [[ -z "$DEST" ]]; then
    if [[ -n "$SMALL" ]]; then DEST="$ROOT/data/emoji-small"; else DEST="$ROOT/data/emoji"; fi
fi

KEY="vl-distill emoji format $FORMAT; small=${SMALL:-all};"
for p in "${PACKAGES[@]}"; do
    read -r name version _ <<<"$p"
    KEY+=" $name@$version"
done
KEY+="; ${PY_REQUIREMENTS[*]}"

complete() {
    [[ -s "$DEST/.complete" && -s "$DEST/dataset_emoji.json" && -d "$DEST/images" ]] || return 1
    [[ "$(sed -n 1p "$DEST/.complete")" == "$KEY" ]] || return 1
    local want have
    want="$(sed -n 's/^images \([0-9]*\)$/\1/p' "$DEST/.complete")"
    have="$(find "$DEST/images" -maxdepth 1 -name '*.png' | wc -l)"
    [[ -n "$want" && "$want" -eq "$have" ]]
}
if [[ $FORCE -eq 0 ]] && complete; then
    echo "emoji: $DEST is complete ($(sed -n 2p "$DEST/.complete"); --force rebuilds)"
    exit 0
fi
# Never delete a folder this script did not write.
if [[ -e "$DEST" && ! -e "$DEST/.complete" && ! -e "$DEST/dataset_emoji.json" ]] \
    && [[ -n "$(ls -A "$DEST" 2>/dev/null)" || ! -d "$DEST" ]]; then
    echo "emoji: $DEST exists and is not an emoji dataset; give another DEST" >&2
    exit 1
fi

for tool in npm python3; do
    command -v "$tool" >/dev/null || { echo "emoji: $tool is needed and not found" >&2; exit 1; }
done
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/vl-distill"
mkdir -p "$CACHE/npm"

sri() { # the SRI sha512 of a file, as npm records it
    python3 -c 'import base64,hashlib,sys; print("sha512-"+base64.b64encode(hashlib.sha512(open(sys.argv[1],"rb").read()).digest()).decode())' "$1"
}
PKG_ARGS=()
for p in "${PACKAGES[@]}"; do
    read -r name version integrity size <<<"$p"
    tgz="$CACHE/npm/$name-$version.tgz"
    if [[ ! -s "$tgz" ]]; then
        echo "emoji: downloading $name@$version from npm ($size)"
        dl="$(mktemp -d "$CACHE/npm/.download.XXXXXX")"
        # npm's own cache would keep a second copy: give it a throw-away one.
        if ! (cd "$dl" && npm pack --loglevel=error --cache "$dl/.npm-cache" \
            "$name@$version" >/dev/null); then
            rm -rf "$dl"
            echo "emoji: npm pack $name@$version failed (npm's message is above)" >&2
            exit 1
        fi
        if [[ ! -s "$dl/$name-$version.tgz" ]]; then
            rm -rf "$dl"
            echo "emoji: npm pack $name@$version wrote no $name-$version.tgz" >&2
            exit 1
        fi
        mv "$dl/$name-$version.tgz" "$tgz"
        rm -rf "$dl"
    fi
    got="$(sri "$tgz")"
    if [[ "$got" != "$integrity" ]]; then
        echo "emoji: $tgz has integrity $got, expected $integrity (delete it to download again)" >&2
        exit 1
    fi
    PKG_ARGS+=(--pkg "$name" "$version" "$integrity" "$tgz")
done

VENV="$CACHE/emoji-venv"
if [[ "$(cat "$VENV/.requirements" 2>/dev/null)" != "${PY_REQUIREMENTS[*]}" ]]; then
    echo "emoji: installing ${PY_REQUIREMENTS[*]} into $VENV"
    rm -rf "$VENV"
    python3 -m venv "$VENV" || { echo "emoji: python3 -m venv failed (install python3-venv)" >&2; exit 1; }
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check --only-binary=:all: \
        "${PY_REQUIREMENTS[@]}"
    echo "${PY_REQUIREMENTS[*]}" >"$VENV/.requirements"
fi

mkdir -p "$(dirname "$DEST")"
tmp="$(mktemp -d "$(dirname "$DEST")/.emoji-build.XXXXXX")"
chmod 755 "$tmp"
trap 'rm -rf "$tmp"' EXIT
echo "emoji: building into $DEST${SMALL:+ ($SMALL emoji identities)}"
"$VENV/bin/python" "$ROOT/data-scripts/emoji/build_dataset.py" --out "$tmp" \
    --key "$KEY" ${SMALL:+--small "$SMALL"} "${PKG_ARGS[@]}"
rm -rf "$DEST"
mv "$tmp" "$DEST"
trap - EXIT
if ! complete; then
    echo "emoji: $DEST is not complete after the build" >&2
    exit 1
fi
echo "emoji: $(du -sh "$DEST" | cut -f1) in $DEST"
