"""The synthetic world needs no DATA: the scripts default to the main job's ./data and create
the folder, since the world is generated there on first use (issue 22)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def run(script: str, *args: str, env: dict, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(REPO / "scripts" / script), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def printing_python(tmp_path: Path) -> str:
    """A PYTHON that prints the train.py command instead of running it."""
    path = tmp_path / "printing_python"
    path.write_text(f'#!/bin/bash\nif [[ "$1" == -c ]]; then exec {sys.executable} "$@"; fi\necho "$@"\n')
    path.chmod(0o755)
    return str(path)


def base_env(tmp_path: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("DATA", "CFG", "SEMPT_PLAN")}
    env.update(OUTPUT=str(tmp_path / "output"), PYTHON=printing_python(tmp_path))
    return env


def root_of(command_line: str) -> str:
    words = command_line.split()
    return words[words.index("--root") + 1]


def test_a_data_folder_that_does_not_exist_yet_is_created_for_the_synthetic_world(tmp_path):
    data = tmp_path / "new" / "data"
    result = run("coop/base2new_train.sh", "synthetic", "1", env=dict(base_env(tmp_path), DATA=str(data)), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert data.is_dir()
    assert root_of(result.stdout.splitlines()[-1]) == str(data)


def test_without_data_the_synthetic_world_lives_in_the_repositorys_data_folder(tmp_path):
    """Plan mode (which creates nothing) shows the train.py command the script would run."""
    env = dict(base_env(tmp_path), SEMPT_PLAN="1")
    for script, args in (("coop/base2new_train.sh", ["synthetic", "1"]), ("coop/base2new_test.sh", ["synthetic", "1"]),
                         ("coop/xd_train.sh", ["synthetic", "1"]), ("coop/fewshot.sh", ["synthetic", "1", "1"])):
        result = run(script, *args, env=env, cwd=tmp_path)
        assert result.returncode == 0, (script, result.stderr)
        record = json.loads(result.stdout.strip().split("SEMPT_PLAN ", 1)[1])
        argv = record["argv"]
        assert argv[argv.index("--root") + 1] == str(REPO / "data"), script


def test_a_real_dataset_still_needs_data(tmp_path):
    result = run("coop/base2new_train.sh", "eurosat", "1", env=base_env(tmp_path), cwd=tmp_path)
    assert result.returncode != 0 and "DATA is not set" in result.stderr
