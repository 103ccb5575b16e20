"""Helpers of the benchmark runner tests: the CLI as users run it, on the synthetic world."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

import pytest

REPO = Path(__file__).resolve().parents[2]
from tools.grid.plan import script_variables  # noqa: E402

# Variables the scripts read: a value left in the developer's shell must not leak in.
SCRIPT_VARS = tuple(script_variables()) + ("SEMPT_PLAN",)


@pytest.fixture()
def bench_env(tmp_path, synthetic_data_root) -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in SCRIPT_VARS}
    env.update(DATA=synthetic_data_root, SEMPT_CACHE_DIR=str(tmp_path / "cache"), PYTHON=sys.executable,
               SHOTS="4", PYTHONUNBUFFERED="1")
    return env


def benchmark(*args: str, env: Dict[str, str], timeout: float = 900) -> subprocess.CompletedProcess:
    """``python -m tools.benchmark ARGS`` from the repository root."""
    return subprocess.run([sys.executable, "-m", "tools.benchmark", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


def script(name: str, *args: str, env: Dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(REPO / "scripts" / name), *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=900)


def events(output: Path) -> List[dict]:
    import json

    path = output / "benchmark" / "events.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []
