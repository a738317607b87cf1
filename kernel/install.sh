#!/usr/bin/env bash
# Installs the Jupyter kernel "Rust (vl-distill)" for this checkout.
#
#   kernel/install.sh            # everything below
#   kernel/install.sh --no-user  # the same without the per-user kernelspec
#
# What it puts where (all but the per-user kernelspec under .kernel-env/,
# which git ignores; running it again only redoes what is missing or stale):
#   .kernel-env/bin/evcxr_jupyter     evcxr's Jupyter kernel, pinned, `cargo install --locked`
#   .kernel-env/venv/                 Python with kernel/requirements.txt (nbclient, nbconvert, ...)
#   .kernel-env/evcxr/init.evcxr      evcxr's start-up: optimised builds, a compilation
#                                     cache, this crate as a path dependency
#   .kernel-env/evcxr/prelude.rs      `use vl_distill::prelude::*;` so a first cell is plain Rust
#   .kernel-env/venv/share/jupyter/kernels/rust-vl-distill/
#                                     the kernelspec, found by the venv's Jupyter tools
#   ~/.local/share/jupyter/kernels/rust-vl-distill/
#                                     the same for the user's own Jupyter (unless --no-user)
#
# Settings (environment variables):
#   VL_KERNEL_OPT        evcxr's optimisation level for every cell and dependency
#                        (default 2; 0 compiles faster and runs candle far slower:
#                        README, "Notebooks")
#   VL_KERNEL_CACHE_MIB  size of evcxr's compilation cache in ~/.cache/evcxr (default 8192)
#   VL_KERNEL_TARGET_CPU the CPU to compile for (default native, as .cargo/config.toml does)
set -euo pipefail

EVCXR_VERSION=0.22.0
ROOT=$(cd "$(dirname "$0")/.." && pwd)
ENV_DIR="$ROOT/.kernel-env"
OPT=${VL_KERNEL_OPT:-2}
CACHE_MIB=${VL_KERNEL_CACHE_MIB:-8192}
TARGET_CPU=${VL_KERNEL_TARGET_CPU:-native}
NAME=rust-vl-distill
USER_SPEC=1
for arg in "$@"; do
    case "$arg" in
        --no-user) USER_SPEC=0 ;;
        -h|--help) sed -n '2,28p' "$0"; exit 0 ;;
        *) echo "install.sh: unknown argument $arg (try --help)" >&2; exit 2 ;;
    esac
done

step() { echo "==> $*"; }
need() { command -v "$1" >/dev/null || { echo "install.sh: $1 not found; $2" >&2; exit 1; }; }
need cargo "install Rust (https://rustup.rs)"
need python3 "install Python 3.9 or newer"

# 1. evcxr_jupyter, pinned, with its own Cargo.lock.
BIN="$ENV_DIR/bin/evcxr_jupyter"
if [[ -x "$BIN" ]] && grep -q "evcxr_jupyter $EVCXR_VERSION " "$ENV_DIR/.crates.toml" 2>/dev/null; then
    step "evcxr_jupyter $EVCXR_VERSION already in $ENV_DIR/bin"
else
    step "cargo install evcxr_jupyter $EVCXR_VERSION (about 6 minutes on 2 cores)"
    start=$SECONDS
    cargo install evcxr_jupyter --version "=$EVCXR_VERSION" --locked --root "$ENV_DIR"
    echo "    installed in $((SECONDS - start)) s"
fi

# 2. The Python side, pinned.
VENV="$ENV_DIR/venv"
if [[ ! -x "$VENV/bin/python" ]]; then
    step "python venv in $VENV"
    python3 -m venv "$VENV"
fi
REQ="$ROOT/kernel/requirements.txt"
STAMP="$VENV/.requirements.sha256"
WANT=$(sha256sum "$REQ" | cut -d' ' -f1)
if [[ "$(cat "$STAMP" 2>/dev/null)" != "$WANT" ]]; then
    step "pip install -r kernel/requirements.txt"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$REQ"
    echo "$WANT" > "$STAMP"
else
    step "Python requirements already installed"
fi

# 3. evcxr's start-up files. Every kernel start runs init.evcxr, then prelude.rs.
#    The crate comes in through kernel/dylib, which links it and all its
#    dependencies into one shared library: evcxr builds every cell as its
#    own library, and statically linked each would carry its own copy of
#    candle, whose tensor ids then collide between cells.
CFG="$ENV_DIR/evcxr"
mkdir -p "$CFG"
step "evcxr config in $CFG (opt level $OPT, cache $CACHE_MIB MiB)"
cat > "$CFG/init.evcxr" <<EOF
:opt $OPT
:cache $CACHE_MIB
:build_env RUSTFLAGS=-Cprefer-dynamic -Ctarget-cpu=$TARGET_CPU
:dep vl_distill = { path = "$ROOT/kernel/dylib", package = "vl-distill-dylib" }
EOF
cat > "$CFG/prelude.rs" <<'EOF'
use vl_distill::prelude::*;
EOF

# 4. The kernelspec.
write_spec() {
    local dir="$1/$NAME"
    mkdir -p "$dir"
    "$VENV/bin/python" - "$dir/kernel.json" <<EOF
import json, sys
spec = {
    "argv": ["$BIN", "--control_file", "{connection_file}"],
    "display_name": "Rust (vl-distill)",
    "language": "rust",
    "interrupt_mode": "message",
    "env": {
        "EVCXR_CONFIG_DIR": "$CFG",
        "VL_DISTILL_WORKDIR": "$ROOT/out/notebooks",
        "VL_DISTILL_ROOT": "$ROOT",
        "VL_DISTILL_LOG": "stdout",
        "CARGO_PROFILE_DEV_DEBUG_ASSERTIONS": "false",
        "CARGO_PROFILE_DEV_OVERFLOW_CHECKS": "false",
    },
}
with open(sys.argv[1], "w") as f:
    json.dump(spec, f, indent=2)
    f.write("\n")
EOF
    echo "    kernelspec $dir"
}
step "kernelspec $NAME"
write_spec "$VENV/share/jupyter/kernels"
if [[ $USER_SPEC == 1 ]]; then
    write_spec "${XDG_DATA_HOME:-$HOME/.local/share}/jupyter/kernels"
fi

"$VENV/bin/jupyter" kernelspec list 2>/dev/null | grep -q "$NAME" || {
    echo "install.sh: the venv's Jupyter does not see the kernelspec $NAME" >&2
    exit 1
}
step "done: run the notebooks with kernel/run-notebooks.sh (see notebooks/README.md)"
