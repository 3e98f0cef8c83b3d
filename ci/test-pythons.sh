#!/usr/bin/env bash
# Check the package on Pythons other than the one .venv uses (`make test-pythons`).
#
#   ci/test-pythons.sh VERSION...      e.g. ci/test-pythons.sh 3.10 3.12
#
# For each VERSION: a fresh venv, a lean install (`pip install -e .`, no extras, plus
# $PYTHONS_TEST_DEPS), `mlpipe validate dags/pipelines`, then pytest on $PYTHONS_TESTS. The
# Makefile sets both variables. An interpreter that is missing is skipped with a message,
# except under CI=true, where it fails the run. Prints how long each interpreter took.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$#" -eq 0 ] || [ -z "${PYTHONS_TESTS:-}" ]; then
    echo "usage: PYTHONS_TESTS='tests/...' [PYTHONS_TEST_DEPS='pytest ...'] $0 VERSION..." >&2
    exit 2
fi
read -r -a tests <<<"$PYTHONS_TESTS"
read -r -a test_deps <<<"${PYTHONS_TEST_DEPS:-pytest hypothesis}"

# Prints the interpreter for VERSION (pyenv's newest build of it, else pythonVERSION on PATH),
# or nothing. Each candidate is run: a pyenv shim exists even where its version is not active.
find_python() {
    local version=$1 candidate
    local pyenv_root=${PYENV_ROOT:-$HOME/.pyenv}
    for candidate in $(ls -d "$pyenv_root/versions/$version".*/bin/"python$version" 2>/dev/null | sort -rV) \
        "$(command -v "python$version" || true)"; do
        if [ -n "$candidate" ] && [ "$("$candidate" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)" = "$version" ]; then
            echo "$candidate"
            return
        fi
    done
}

work=$(mktemp -d "${TMPDIR:-/tmp}/mlpipe-pythons.XXXXXX")
trap 'rm -rf "$work"' EXIT
summary=()
missing=()

for version in "$@"; do
    python=$(find_python "$version")
    if [ -z "$python" ]; then
        missing+=("$version")
        if [ "${CI:-}" = "true" ]; then
            echo "test-pythons: Python $version not found (pyenv under ${PYENV_ROOT:-$HOME/.pyenv}, or python$version on PATH); CI must test it" >&2
        else
            echo "test-pythons: SKIPPED Python $version: not found (pyenv under ${PYENV_ROOT:-$HOME/.pyenv}, or python$version on PATH)"
        fi
        continue
    fi
    echo "test-pythons: Python $version ($python)"
    venv="$work/py$version"
    started=$SECONDS
    "$python" -m venv "$venv"
    # No extras: what `pip install airflow-mlpipe` gives a user must validate and load specs.
    # --no-compile: byte-compiling all of Airflow costs ~25 s of CPU; the tests import a fraction.
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-compile -e . "${test_deps[@]}"
    installed=$SECONDS
    # The package must claim the interpreter it was just tested on.
    "$venv/bin/python" - "$version" <<'EOF'
import sys
from importlib.metadata import metadata

version = sys.argv[1]
classifiers = metadata("airflow-mlpipe").get_all("Classifier") or []
if f"Programming Language :: Python :: {version}" not in classifiers:
    sys.exit(f"setup.cfg has no classifier 'Programming Language :: Python :: {version}'")
EOF
    "$venv/bin/mlpipe" validate dags/pipelines
    "$venv/bin/python" -m pytest -q "${tests[@]}"
    summary+=("Python $version: $((SECONDS - started)) s (venv and install $((installed - started)) s, validate and tests $((SECONDS - installed)) s)")
done

echo "test-pythons: done"
for line in "${summary[@]}"; do
    echo "  $line"
done
if [ "${#missing[@]}" -gt 0 ]; then
    if [ "${CI:-}" = "true" ]; then
        echo "test-pythons: FAILED: Python ${missing[*]} not found" >&2
        exit 1
    fi
    echo "  skipped (not found): Python ${missing[*]}"
fi
