"""`team-memory bench` runs the benchmark of a source checkout, and says so without one."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.support.hooks import ROOT


def test_bench_runs_python_m_bench_of_the_checkout() -> None:
    done = subprocess.run([sys.executable, "-m", "team_memory", "bench", "--no-such-option"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    # bench's own argument parser answered: the command reached `python -m bench`.
    assert done.returncode == 2
    assert "usage: python -m bench" in done.stderr
    assert "unrecognized arguments: --no-such-option" in done.stderr


def test_without_a_checkout_bench_says_what_it_needs(tmp_path: Path) -> None:
    """The packages as a wheel installs them: no bench/ beside them."""
    for package in ("team_memory", "team_memory_core", "mcp_server", "workflows",
                    "activities"):
        shutil.copytree(ROOT / package, tmp_path / package,
                        ignore=shutil.ignore_patterns("__pycache__"))
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    done = subprocess.run([sys.executable, "-m", "team_memory", "bench", "--quick"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.returncode == 1
    assert "needs a source checkout" in done.stderr
    assert "Traceback" not in done.stderr
