#!/usr/bin/env bash
# Set up muonlab in the current Python environment.
#  * Keeps any torch the user already has (>= 2.5).
#  * When torch is missing, installs torch==2.13.0. On the project's build machines that resolves
#    to a local CPU wheel; it never asks for a looser torch that could pull a multi-GB CUDA build.
#  * Then installs muonlab (editable) with the requested extras (default: lab).
set -euo pipefail
extras="${1:-lab}"
cd "$(dirname "$0")/.."
py="${PYTHON:-python3}"
if ! "$py" -c 'import torch, sys; v=tuple(int(x) for x in torch.__version__.split("+")[0].split(".")[:2]); sys.exit(v < (2, 5))' 2>/dev/null; then
  "$py" -m pip install -q "torch==2.13.0"
fi
"$py" -m pip install -q -e ".[${extras}]"
