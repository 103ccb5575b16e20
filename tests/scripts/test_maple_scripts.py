"""MaPLe's scripts pick upstream's config per protocol (the commands only: PYTHON=echo)."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("script, args, config", [
    ("base2new_train.sh", ["eurosat", "1"], "vit_b16_c2_ep5_batch4_2ctx"),
    ("xd_train.sh", ["1"], "vit_b16_c2_ep5_batch4_2ctx_cross_datasets"),  # ImageNet, all classes
    ("fewshot.sh", ["eurosat", "4", "1"], "vit_b16_c2_ep50_batch4_2ctx_few_shot"),
    ("fewshot.sh", ["imagenet", "4", "1"], "vit_b16_c2_ep50_batch4_2ctx_few_shot"),
    ("base2new_train.sh", ["synthetic", "1"], "synthetic"),
])
def test_each_protocol_gets_its_config(tmp_path, script, args, config):
    env = dict(os.environ, DATA=str(tmp_path), OUTPUT=str(tmp_path / "output"), PYTHON="echo")
    env.pop("CFG", None)
    result = subprocess.run(["bash", str(REPO / "scripts" / "maple" / script), *args], env=env, cwd=tmp_path,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert f"--config-file configs/trainers/MaPLe/{config}.yaml" in result.stdout
    assert f"/MaPLe/{config}" in result.stdout  # the output folder names the config, as upstream
