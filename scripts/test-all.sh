#!/usr/bin/env bash
# Everything the tests check, in one command (the README's test command, and
# what CI runs):
#
#   1. in the background while 2 and 3 run (output in
#      out/test-all/kernel-install.log): kernel/install.sh --no-user builds
#      the pinned evcxr kernel and the Python side into .kernel-env/, then
#      kernel/run-notebooks.sh --warm-up starts the kernel once, which
#      compiles the crate and its dependencies for the notebooks' kernels;
#   2. data-scripts/fetch_all.sh --tests: all-MiniLM-L6-v2, EfficientNet-Lite0,
#      the test photos and the small emoji set, into data/;
#   3. VL_DISTILL_REQUIRE_DATA=1 cargo test --release: the unit and integration
#      tests, those of the real models and data included (failing, not
#      skipping, without their files);
#   4. waits for 1 (and prints its log if it failed);
#   5. kernel/run-notebooks.sh --profile smoke --jobs 2: every notebook at the
#      smoke profile, two at a time.
#
# Building the kernel beside the tests uses the time a build leaves a core
# idle (linking, a crate that others wait for); the notebooks at the smoke
# profile mostly start kernels and compile cells on one core, so two run at
# once, one compute thread each. On 2 cores
# the whole command took 47 min one step after another: README, "Set up and
# run", has the time it takes now.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p out/test-all
LOG=out/test-all/kernel-install.log

start=$SECONDS
# in a process group of its own (job control on for this one start), so
# that the whole build stops with this script, whichever way it ends
set -m
{ kernel/install.sh --no-user && kernel/run-notebooks.sh --warm-up; } > "$LOG" 2>&1 &
install=$!
set +m
trap 'kill -- -$install 2>/dev/null || true' EXIT
echo "==> kernel/install.sh --no-user, then a first kernel start, in the background (log: $LOG)"

data-scripts/fetch_all.sh --tests
VL_DISTILL_REQUIRE_DATA=1 cargo test --release

echo "==> waiting for the kernel"
if ! wait "$install"; then
    echo "test-all.sh: installing or starting the kernel failed; the output:" >&2
    cat "$LOG" >&2
    exit 1
fi
trap - EXIT
echo "    kernel ready ($((SECONDS - start)) s after the start; log: $LOG)"

kernel/run-notebooks.sh --profile smoke --jobs 2
echo "==> all tests passed in $((SECONDS - start)) s"
