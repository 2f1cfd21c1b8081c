"""scripts/setup.sh chooses where to install without installing anything (``--print-env``).

"current": pip may install into the running Python (a venv/conda env, or not externally managed).
"venv": the Python is externally managed (PEP 668), so setup.sh makes and uses ``.venv``.
``MUONLAB_EXTERNALLY_MANAGED=1/0`` is the script's documented testing hook for that check.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "setup.sh"

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")

IN_VENV = sys.prefix != sys.base_prefix


def _setup(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k != "MUONLAB_EXTERNALLY_MANAGED"}
    base["PYTHON"] = sys.executable
    return subprocess.run(["bash", str(SCRIPT), *args], env={**base, **(env or {})},
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("flag, expected", [("1", "venv"), ("0", "current")])
def test_override_decides(flag, expected):
    r = _setup("--print-env", env={"MUONLAB_EXTERNALLY_MANAGED": flag})
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == expected


def test_override_must_be_0_or_1():
    r = _setup("--print-env", env={"MUONLAB_EXTERNALLY_MANAGED": "yes"})
    assert r.returncode != 0 and "MUONLAB_EXTERNALLY_MANAGED" in r.stderr


@pytest.mark.parametrize("marker", [True, False])
def test_pep668_marker_is_detected(tmp_path, marker):
    # A sitecustomize moves this interpreter's stdlib path to a folder with (or without) the
    # EXTERNALLY-MANAGED marker, so the script's real check runs against it.
    stdlib = tmp_path / "stdlib"
    stdlib.mkdir()
    if marker:
        (stdlib / "EXTERNALLY-MANAGED").write_text("[externally-managed]\nError=test\n")
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(
        "import os, sysconfig\n"
        "_get_path = sysconfig.get_path\n"
        "def get_path(name, *args, **kwargs):\n"
        "    return os.environ['FAKE_STDLIB'] if name == 'stdlib' else _get_path(name, *args, **kwargs)\n"
        "sysconfig.get_path = get_path\n")
    r = _setup("--print-env", env={"PYTHONPATH": str(site), "FAKE_STDLIB": str(stdlib)})
    assert r.returncode == 0, r.stderr
    # An active venv always allows pip (PEP 668 applies only outside one).
    assert r.stdout.strip() == ("venv" if marker and not IN_VENV else "current")


def test_print_env_installs_nothing():
    had_venv = (ROOT / ".venv").exists()
    r = _setup("--print-env", env={"MUONLAB_EXTERNALLY_MANAGED": "1"})
    assert r.returncode == 0 and r.stderr == ""
    assert (ROOT / ".venv").exists() == had_venv


def test_unknown_option_fails():
    r = _setup("--no-such-option")
    assert r.returncode == 2 and "usage" in r.stderr


def test_torch_pin_is_exact():
    # Never a looser torch spec that could pull a multi-GB CUDA build.
    specs = re.findall(r"pip install[^\n]*?\"(torch[^\"]*)\"", SCRIPT.read_text())
    assert specs == ["torch==2.13.0"]


# ---- the parity suite's upstream packages (the "dev" extra) -------------------------------------

PARITY_PINS = ["pytorch-optimizer==4.1.0", "heavyball==3.2.1", "opt-einsum", "trasmuon-pytorch==0.1.0",
               "ultralytics==8.4.190"]


def _fake_python(tmp_path: Path, fail_no_deps: bool) -> tuple[Path, Path]:
    """A stand-in ``$PYTHON`` that logs its arguments: ``-c`` checks succeed (torch is "there"),
    ``pip install`` succeeds, except the ``--no-deps`` installs when ``fail_no_deps``."""
    log = tmp_path / "calls.log"
    fake = tmp_path / "python"
    fake.write_text(
        "#!/usr/bin/env bash\n"
        f"echo \"$*\" >> '{log}'\n"
        "case \"$*\" in *--no-deps*) exit ${FAKE_FAIL:-0} ;; esac\n"
        "exit 0\n")
    fake.chmod(0o755)
    return fake, log


def _setup_with(fake: Path, extras: str, fail: bool) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "MUONLAB_EXTERNALLY_MANAGED"}
    env.update(PYTHON=str(fake), MUONLAB_EXTERNALLY_MANAGED="0", FAKE_FAIL="1" if fail else "0")
    return subprocess.run(["bash", str(SCRIPT), extras, "--", "echo", "ran"], env=env, capture_output=True,
                          text=True, timeout=60, check=False)


@pytest.mark.parametrize("fail", [False, True])
def test_dev_extra_installs_the_pinned_upstreams_without_deps(tmp_path, fail):
    fake, log = _fake_python(tmp_path, fail)
    r = _setup_with(fake, "dev", fail)
    # A failed upstream install warns and setup goes on to run the command.
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "ran"
    assert ("warning: could not install" in r.stderr) == fail
    calls = log.read_text().splitlines()
    assert "-m pip install -q -e .[dev]" in calls
    assert f"-m pip install -q --no-deps {' '.join(PARITY_PINS)}" in calls
    assert "-m pip install -q --no-deps --ignore-requires-python emerging-optimizers==0.3.0" in calls
    assert "-m pip install -q absl-py typing_extensions" in calls


@pytest.mark.parametrize("extras, parity", [("lab", False), ("lab,dev", True), ("devices", False)])
def test_only_the_dev_extra_installs_the_upstreams(tmp_path, extras, parity):
    fake, log = _fake_python(tmp_path, False)
    r = _setup_with(fake, extras, False)
    assert r.returncode == 0, r.stderr
    assert any("--no-deps" in c for c in log.read_text().splitlines()) == parity
