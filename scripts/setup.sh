#!/usr/bin/env bash
# Set up muonlab, then (optionally) run a command in the environment it set up.
#
#   bash scripts/setup.sh [EXTRAS] [-- COMMAND [ARGS...]]
#   bash scripts/setup.sh --print-env
#
#  * Where: into the current Python ($PYTHON, default python3) when pip may install there: an
#    active virtual environment or conda env, or any Python that is not "externally managed".
#    An externally managed Python (PEP 668: an EXTERNALLY-MANAGED file in its stdlib directory and
#    no venv active, e.g. Debian/Ubuntu's system Python) refuses `pip install`; then the script
#    creates (or reuses) the virtual environment .venv in the repository, made with
#    --system-site-packages so a system torch is reused, and says so on stderr. Where venv lacks
#    ensurepip (Debian without python3-venv), .venv is made --without-pip and uses the system pip,
#    visible through --system-site-packages.
#  * Keeps any torch the environment already has (>= 2.5).
#  * When torch is missing, installs torch==2.13.0. On the project's build machines that resolves
#    to a local CPU wheel; it never asks for a looser torch that could pull a multi-GB CUDA build.
#  * Then installs muonlab (editable) with the requested extras (default: lab).
#  * With the "dev" extra, also the upstream optimizer packages the parity suite (tests/parity/)
#    compares against, pinned and with --no-deps (they need only torch; ultralytics' and
#    trasmuon-pytorch's optimizer modules are loaded by file path, so their other dependencies are
#    never imported): pytorch-optimizer, heavyball (+ opt-einsum), trasmuon-pytorch, ultralytics,
#    and emerging-optimizers (--ignore-requires-python: it declares Python >= 3.12 but runs on 3.10+
#    with the test suite's typing.override shim; + absl-py, typing_extensions). A failed install
#    only warns: the parity tests of a missing package skip.
#  * After "--", runs COMMAND (from the caller's directory) in that environment: with .venv/bin
#    first on PATH when it used .venv. E.g. `bash scripts/setup.sh dev -- python3 -m pytest -q`.
#  * --print-env prints the choice, "current" or "venv", and exits; it installs nothing.
#
# Testing hook: MUONLAB_EXTERNALLY_MANAGED=1 makes the script treat the current Python as
# externally managed (so it chooses .venv) and MUONLAB_EXTERNALLY_MANAGED=0 as installable;
# unset, the PEP 668 check decides. tests/test_setup_script.py uses it with --print-env.
set -euo pipefail
usage="usage: bash scripts/setup.sh [EXTRAS] [-- COMMAND [ARGS...]] | --print-env"
extras=lab
print_env=0
cmd=()
while [ $# -gt 0 ]; do
  case "$1" in
    --) shift; cmd=("$@"); break ;;
    --print-env) print_env=1; shift ;;
    -*) echo "setup.sh: unknown option '$1'; $usage" >&2; exit 2 ;;
    *) extras="$1"; shift ;;
  esac
done
caller_dir="$PWD"
cd "$(dirname "$0")/.."
py="${PYTHON:-python3}"

# Prints "venv" when pip may not install into $py (PEP 668), else "current".
choose_env() {
  case "${MUONLAB_EXTERNALLY_MANAGED:-}" in
    1) echo venv; return ;;
    0) echo current; return ;;
    "") ;;
    *) echo "setup.sh: MUONLAB_EXTERNALLY_MANAGED must be 0 or 1, not '$MUONLAB_EXTERNALLY_MANAGED'" >&2
       return 2 ;;
  esac
  "$py" -c 'import os, sys, sysconfig
in_venv = sys.prefix != getattr(sys, "base_prefix", sys.prefix) or hasattr(sys, "real_prefix")
marker = os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED")
print("venv" if not in_venv and os.path.isfile(marker) else "current")'
}
env_kind="$(choose_env)"
if [ "$print_env" = 1 ]; then
  echo "$env_kind"
  exit 0
fi

if [ "$env_kind" = venv ]; then
  venv="$PWD/.venv"
  if [ -x "$venv/bin/python" ]; then
    echo "setup.sh: $py is externally managed (PEP 668); using the virtual environment $venv" >&2
  else
    echo "setup.sh: $py is externally managed (PEP 668); creating the virtual environment $venv" \
         "(--system-site-packages: a system torch is reused)" >&2
    if ! "$py" -m venv --system-site-packages "$venv" >&2; then
      echo "setup.sh: venv has no ensurepip (Debian/Ubuntu: apt install python3-venv); making $venv" \
           "--without-pip, to use the system pip" >&2
      "$py" -m venv --system-site-packages --without-pip "$venv" >&2
    fi
  fi
  py="$venv/bin/python"
  if ! "$py" -m pip --version >/dev/null 2>&1; then
    echo "setup.sh: no pip in $venv nor in the system site-packages; install pip or python3-venv" >&2
    exit 1
  fi
  echo "setup.sh: afterwards, 'source .venv/bin/activate' gives the muonlab command" >&2
fi
if ! "$py" -c 'import torch, sys; v=tuple(int(x) for x in torch.__version__.split("+")[0].split(".")[:2]); sys.exit(v < (2, 5))' 2>/dev/null; then
  "$py" -m pip install -q "torch==2.13.0"
fi
"$py" -m pip install -q -e ".[${extras}]"

# The parity suite's upstreams (see the header). Pinned: the suite's tolerances are for these versions.
parity_pkgs=("pytorch-optimizer==4.1.0" "heavyball==3.2.1" "opt-einsum" "trasmuon-pytorch==0.1.0"
             "ultralytics==8.4.190")
parity_noreq=("emerging-optimizers==0.3.0")
parity_deps=("absl-py" "typing_extensions")
parity_warn() {
  echo "setup.sh: warning: could not install $*; the parity tests that need them will skip" >&2
}
case ",${extras}," in
  *,dev,*)
    "$py" -m pip install -q --no-deps "${parity_pkgs[@]}" || parity_warn "${parity_pkgs[*]}"
    "$py" -m pip install -q --no-deps --ignore-requires-python "${parity_noreq[@]}" \
      || parity_warn "${parity_noreq[*]}"
    "$py" -m pip install -q "${parity_deps[@]}" || parity_warn "${parity_deps[*]}"
    ;;
esac

if [ ${#cmd[@]} -eq 0 ]; then
  exit 0
fi
cd "$caller_dir"
if [ "$env_kind" = venv ]; then
  export VIRTUAL_ENV="$venv"
  export PATH="$venv/bin:$PATH"
  unset PYTHONHOME
else
  # pip may have put the console scripts (muonlab) in a directory not on PATH (a --user install).
  while IFS= read -r d; do
    case ":$PATH:" in *":$d:"*) ;; *) PATH="$PATH:$d" ;; esac
  done < <("$py" -c 'import sysconfig
print(sysconfig.get_path("scripts"))
print(sysconfig.get_path("scripts", sysconfig.get_preferred_scheme("user")))' 2>/dev/null || true)
  export PATH
fi
exec "${cmd[@]}"
