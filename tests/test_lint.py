"""Lint and format checks, run by the test command so CI enforces them (contributors: .pre-commit-config.yaml).

ruff (lint + format) for the Python code, snakefmt for the Snakefile and the rules, and Snakemake's own
``--lint`` for the workflow. Each is the real tool at the version pinned in requirements.lock.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PYTHON_PATHS = ["pass", "tests", "bench"]
SNAKE_PATHS = ["Snakefile", "workflow/rules"]


def _run(*cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(list(cmd), cwd=REPO, capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize(
    "args", [["check", *PYTHON_PATHS], ["format", "--check", *PYTHON_PATHS]], ids=["ruff-check", "ruff-format"]
)
def test_ruff(args):
    proc = _run(str(BIN / "ruff"), *args)
    assert proc.returncode == 0, (
        f"`ruff {' '.join(args)}` failed (fix: ruff check --fix / ruff format):\n" + (proc.stdout + proc.stderr)[-4000:]
    )


def test_snakefmt():
    proc = _run(str(BIN / "snakefmt"), "--check", *SNAKE_PATHS)
    assert proc.returncode == 0, (
        "snakefmt would reformat (fix: snakefmt Snakefile workflow/rules):\n" + (proc.stdout + proc.stderr)[-4000:]
    )


def test_snakemake_lint():
    proc = _run(sys.executable, "-m", "snakemake", "--lint", "--configfile", "config/test.yaml")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "Congratulations, your workflow is in a good condition!" in out, out[-4000:]
