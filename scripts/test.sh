#!/usr/bin/env bash
# The one test command: the Rust test suite, then the Python package's
# suite against a freshly built wheel and the CLI (for the interchange
# tests). Needs the Rust toolchain and Python 3 with pip (PyPI reachable).
#
#   bash scripts/test.sh            # everything
#   SKIP_RUST=1 bash scripts/test.sh -k dask   # only the Python suite; pytest args pass through
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never

if [ -z "${SKIP_RUST:-}" ]; then
    echo "== cargo test --all-features"
    cargo test --all-features
fi

echo "== Python environment (target/python-venv)"
VENV=target/python-venv
PYTHON="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --upgrade pip

echo "== pip install \".[test,dask]\" (the README's command, from the repository root)"
"$VENV/bin/python" -m pip install --quiet --force-reinstall --no-deps .
"$VENV/bin/python" -m pip install --quiet ".[test,dask]"

echo "== cargo build --release --features cli (for the interchange tests)"
cargo build --release --features cli

echo "== pytest python/tests"
cd python/tests
CONFSEG_REQUIRE_CLI=1 CONFSEG_CLI="$PWD/../../target/release/confseg" \
    "../../$VENV/bin/python" -m pytest -q -p no:cacheprovider "$@"
