#!/usr/bin/env bash
# ansible-test sanity on pinned.winrm.
#
# ansible-test wants the collection as a real tree at .../ansible_collections/pinned/winrm (the
# repository root is only symlinked there), so this copies the collection into a temporary
# ansible_collections/pinned/winrm and runs the sanity tests there, locally (no containers here),
# for the Python versions this machine has.
#
# Usage: tests/sanity/run.sh [extra ansible-test sanity arguments, e.g. --test pylint]
# Environment:
#   SANITY_PYTHON   Python version to test (default: the .venv's version)
#   SANITY_KEEP     keep the temporary tree (prints its path)
#   SANITY_PREPARE  a shell command run inside the copy before testing (e.g. to try a patch)
#
# What is copied: what `ansible-galaxy collection build` ships (plugins, meta, docs, changelogs,
# examples, galaxy.yml, requirements) plus tests/sanity (the ignore files). The test suite's own code
# (tests/lab, tests/unit, tests/integration, tests/_loopback.py) is not collection content and is left
# out: it is not loaded by Ansible and is checked by pytest instead.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
VENV_BIN="${VENV_BIN:-$ROOT/.venv/bin}"
ANSIBLE_TEST="$VENV_BIN/ansible-test"
PY_VERSION="${SANITY_PYTHON:-$("$VENV_BIN/python" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')}"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/pinned-sanity.XXXXXX")"
cleanup() {
  if [[ -n "${SANITY_KEEP:-}" ]]; then echo "kept: $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

DEST="$WORK/ansible_collections/pinned/winrm"
mkdir -p "$DEST"
# tar rather than rsync: rsync is not on every CI image; the excludes mirror galaxy.yml build_ignore.
tar -C "$ROOT" -cf - \
  --exclude=./.git --exclude='./.venv*' --exclude=./build --exclude=./.lab --exclude=./.ci \
  --exclude=./benchmarks --exclude='./tests/lab' --exclude='./tests/unit' --exclude='./tests/integration' \
  --exclude='./tests/output' --exclude='./tests/demo.py' --exclude='./tests/conftest.py' --exclude='./tests/_loopback.py' \
  --exclude='./tests/__init__.py' --exclude='./tests/requirements.txt' --exclude=./bin \
  --exclude='__pycache__' --exclude='*.pyc' --exclude=.pytest_cache --exclude=.mypy_cache \
  --exclude='*.tar.gz' --exclude=./Makefile --exclude=./pytest.ini --exclude=./ansible.cfg \
  . | tar -C "$DEST" -xf -

# ansible-test lists a collection's files through git when it is a git work tree; a fresh repository
# with everything added makes the listing exact and independent of the checkout's state.
(
  cd "$DEST"
  if [[ -n "${SANITY_PREPARE:-}" ]]; then bash -c "$SANITY_PREPARE"; fi
  git init -q
  git add -A
  git -c user.name=sanity -c user.email=sanity@localhost commit -q -m sanity --no-gpg-sign
)

# ansible-test keeps its per-test virtual environments and caches under ~/.ansible/test; give it a home
# of its own under build/ so the user's home is left alone and CI reuses the cache between runs.
export PYENV_ROOT="${PYENV_ROOT:-$HOME/.pyenv}"
export HOME="$ROOT/build/sanity-home"
CACHE="$HOME/.ansible/test/cache"
mkdir -p "$CACHE"
# ansible-test bootstraps pip in each test venv with a get-pip script downloaded from
# ci-files.testing.ansible.com. Without internet access, stand in for it: install the pip that Python
# bundles (ensurepip), then let that pip install the requested version from the configured index.
PIP_VERSION="$("$VENV_BIN/python" - <<'PYEOF'
from ansible_test._internal.python_requirements import get_venv_packages
from types import SimpleNamespace
print(get_venv_packages(SimpleNamespace(version="")).get("pip", ""))
PYEOF
)"
if [[ -n "$PIP_VERSION" && ! -f "$CACHE/get_pip_${PIP_VERSION//./_}.py" ]]; then
  cat > "$CACHE/get_pip_${PIP_VERSION//./_}.py" <<'PYEOF'
"""Offline stand-in for get-pip.py: bundled pip via ensurepip, then `pip install` of the given arguments."""
import ensurepip
import subprocess
import sys

ensurepip.bootstrap(upgrade=True)
args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
sys.exit(subprocess.call([sys.executable, "-m", "pip", "install", *args]))
PYEOF
fi

cd "$DEST"
PATH="$VENV_BIN:$PATH"
export PATH
args=(sanity --local --color no)
args+=(--python "$PY_VERSION")
start=$(date +%s)
set +e
"$ANSIBLE_TEST" "${args[@]}" "$@"
rc=$?
set -e
echo "ansible-test sanity: rc=$rc in $(( $(date +%s) - start ))s (python $PY_VERSION)" >&2
exit $rc
