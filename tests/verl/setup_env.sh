#!/usr/bin/env bash
# Build, once, the virtual environment the real-verl tests run in, and print its path.
#
# verl pins transformers below 5.11, which the project's own .venv is past, so verl gets an environment of its
# own, kept in a cache directory outside the clone so that CI and later runs reuse it. The CPU torch wheel goes
# in first, and a constraints file holds it there: an unpinned resolution would pull CUDA torch (gigabytes).
# gaincurate itself is not installed here; the tests put the clone on PYTHONPATH, so the environment does not
# depend on which clone built it. The stamp file is written last: an interrupted build is rebuilt from scratch.
#
#   VERL_SPEC            what to install (default verl==0.9.1)
#   VERL_EXTRA           more requirements, space-separated (default: what verl 0.9's v1 trainer imports
#                        beyond verl's own dependencies; verl 0.7.1 needs "numpy<2 pyarrow<26")
#   GAINCURATE_VERL_VENV where the environment lives (default ~/.cache/gaincurate/verl-VERSION)
#   TORCH_INDEX          an index URL for the CPU torch wheel (on PyPI itself: https://download.pytorch.org/whl/cpu)
#
# `setup_env.sh --check` builds nothing: it prints the path of a complete environment, or says why there is
# none (with the end of the last build's log, VENV.log) and exits 1.
set -euo pipefail

VERL_SPEC="${VERL_SPEC:-verl==0.9.1}"
# verl 0.9's default trainer (trainer.use_v1) imports transfer_queue, cachetools, fastapi and uvicorn, which only
# verl's `verl-core` extra declares; the whole extra would also bring GPU and media packages (nvtx, torchcodec,
# qwen_vl_utils). The one-launch curriculum runs inside that trainer. An explicit VERL_EXTRA (even empty) replaces
# this default.
VERL_EXTRA="${VERL_EXTRA-TransferQueue>=0.1.10 cachetools fastapi uvicorn}"
TORCH_SPEC="${TORCH_SPEC:-torch==2.13.0}"
TORCH_INDEX="${TORCH_INDEX:-}"
PYTHON="${PYTHON:-python3}"
VENV="${GAINCURATE_VERL_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/gaincurate/verl-${VERL_SPEC#verl==}}"
# What gaincurate's modules under test import that verl does not bring, and the test runner.
OURS="gguf math-verify typer rich pytest"
STAMP="$VENV/.gaincurate-complete"
WANT="$VERL_SPEC | $TORCH_SPEC | $VERL_EXTRA | $OURS | $($PYTHON -c 'import sys; print(sys.version.split()[0])')"

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ]; then
    echo "$VENV"
    exit 0
fi
if [ "${1:-}" = "--check" ]; then
    echo "no complete $VERL_SPEC environment at $VENV (build it: make verl-env)" >&2
    [ -f "$VENV.log" ] && tail -n 5 "$VENV.log" >&2
    exit 1
fi
# Keep this build's messages for --check, which the tests call when they skip.
mkdir -p "$(dirname "$VENV")"
exec 2> >(tee "$VENV.log" >&2)

start=$(date +%s)
rm -rf "$VENV"
"$PYTHON" -m venv "$VENV"
py="$VENV/bin/python"
constraints="$VENV/constraints.txt"
printf '%s\n' "$TORCH_SPEC" $VERL_EXTRA >"$constraints"
quiet_pip() {
    # A pip.conf may name local indexes that are absent; pip then warns once per package, which is noise.
    local status=0
    "$py" -m pip install -q "$@" 2>"$VENV/pip.err" || status=$?
    grep -v "is ignored: it is neither a file nor a directory" "$VENV/pip.err" >&2 || true
    return "$status"
}
# pip for torch (it honours the machine's pip.conf, which may name a local CPU wheel) and uv; uv for the rest,
# several times faster than pip on a cold machine, where this build is part of CI's time. uv reads no pip.conf:
# where it cannot be had or cannot reach an index, pip does the same install. Without --compile-bytecode (unlike
# .venv): the real-verl test imports verl in a handful of processes and took the same time either way (71-73 s),
# while compiling cost the build 30 s.
quiet_pip "$TORCH_SPEC" ${TORCH_INDEX:+--index-url "$TORCH_INDEX"}
quiet_pip uv || echo "uv not installed: pip installs the rest" >&2
# shellcheck disable=SC2086  # VERL_EXTRA and OURS are word lists on purpose
"$VENV/bin/uv" pip install --python "$py" -q -c "$constraints" "$VERL_SPEC" $VERL_EXTRA $OURS \
    || quiet_pip -c "$constraints" "$VERL_SPEC" $VERL_EXTRA $OURS
"$py" - "$TORCH_SPEC" <<'PY' >&2
import sys

import torch
import verl

wanted = sys.argv[1].split("==")[1]
assert torch.__version__.split("+")[0] == wanted, f"torch {torch.__version__} replaced {wanted}"
print(f"verl {verl.__version__} with torch {torch.__version__}")
PY
echo "$WANT" >"$STAMP"
echo "built $VENV in $(($(date +%s) - start)) s" >&2
echo "$VENV"
