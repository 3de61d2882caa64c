"""ruff over the package, tests, benchmarks and notebooks: how lint enters `make test`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_finds_nothing():
    """The rules and their reasons are in pyproject.toml ([tool.ruff])."""
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "."], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, f"ruff found problems:\n{result.stdout}{result.stderr}"
