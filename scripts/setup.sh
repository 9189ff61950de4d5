#!/usr/bin/env bash
# Idempotent set-up on a fresh machine: the embedded data set (Debian package), a virtualenv with the
# exact versions of requirements.lock, and this project (import name `passprune`, folder pass/).
# A second run does nothing that is already done.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${PASSPRUNE_VENV:-.venv}

if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  if ! dpkg -s dataset-fashion-mnist >/dev/null 2>&1; then
    echo "[setup] installing Debian's dataset-fashion-mnist (the embedded data)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null
  fi
else
  echo "[setup] apt-get not usable here: Fashion-MNIST will be downloaded by torchvision on first use"
fi

[ -x "$VENV/bin/python" ] || { echo "[setup] creating $VENV"; python3 -m venv "$VENV"; }
stamp="$VENV/.passprune-installed"
if [ ! -f "$stamp" ] || [ requirements.lock -nt "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "[setup] installing pinned dependencies (torch is a ~5.5 GB CUDA build; a few minutes the first time)"
  "$VENV/bin/pip" install -q --upgrade pip
  "$VENV/bin/pip" install -q -r requirements.lock
  "$VENV/bin/pip" install -q --no-deps -e .
  touch "$stamp"
fi
# versions from the installed metadata: importing torch to print its version cost 2-3 s at every run.sh
echo "[setup] ready: $("$VENV/bin/python" -c 'from importlib.metadata import version as v; print("passprune", v("passprune"), "torch", v("torch"))')"
