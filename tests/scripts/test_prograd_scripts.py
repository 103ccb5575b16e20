"""ProGrad's scripts choose upstream's config per shot count and its lambda per dataset.

``PYTHON=echo`` prints the train.py command a script would run, so the choice is checked
without training (the synthetic runs are covered by test_scripts.py).
"""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def command(script: str, *args: str, tmp_path: Path, **env: str) -> str:
    environ = {k: v for k, v in os.environ.items() if k not in ("CFG", "SHOTS")}
    environ.update(DATA=str(tmp_path), OUTPUT=str(tmp_path / "output"), PYTHON="echo", **env)
    result = subprocess.run(["bash", str(REPO / "scripts" / "prograd" / script), *args], env=environ,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.parametrize("dataset, shots, config, lambda_", [
    ("caltech101", "1", "rn50_ep50", None),
    ("caltech101", "2", "rn50_ep100", None),
    ("eurosat", "4", "rn50_ep100", None),
    ("caltech101", "16", "rn50", None),
    ("oxford_flowers", "8", "rn50", "0.8"),
    ("dtd", "16", "rn50", "0.8"),
    ("eurosat", "16", "rn50", "0.8"),
    ("imagenet", "16", "rn50_ep50", None),
])
def test_fewshot_picks_upstreams_config_and_lambda(dataset, shots, config, lambda_, tmp_path):
    out = command("fewshot.sh", dataset, shots, "1", tmp_path=tmp_path)
    assert f"configs/trainers/ProGrad/{config}.yaml" in out
    assert f"fewshot/{dataset}/shots_{shots}/ProGrad/{config}/seed1" in out
    assert ("TRAINER.PROGRAD.LAMBDA 0.8" in out) == (lambda_ is not None)


def test_fewshot_keeps_a_given_config_and_a_given_lambda_wins(tmp_path):
    out = command("fewshot.sh", "dtd", "16", "1", "TRAINER.PROGRAD.LAMBDA", "1.0", tmp_path=tmp_path,
                  CFG="vit_b16_ep100")
    assert "configs/trainers/ProGrad/vit_b16_ep100.yaml" in out
    assert out.index("TRAINER.PROGRAD.LAMBDA 0.8") < out.index("TRAINER.PROGRAD.LAMBDA 1.0")  # the last wins


def test_base_to_novel_is_vit_b16_with_16_shots_and_upstreams_rn50_with_4(tmp_path):
    out = command("base2new_train.sh", "caltech101", "1", tmp_path=tmp_path)
    assert "ProGrad/vit_b16_ep100.yaml" in out and "DATASET.NUM_SHOTS 16" in out
    out = command("base2new_train.sh", "imagenet", "1", tmp_path=tmp_path)
    assert "ProGrad/vit_b16_ep50.yaml" in out
    out = command("base2new_train.sh", "caltech101", "1", tmp_path=tmp_path, CFG="rn50_ep100")
    assert "base2new/train_base/caltech101/shots_4/ProGrad/rn50_ep100/seed1" in out and "DATASET.NUM_SHOTS 4" in out
    out = command("xd_train.sh", "1", tmp_path=tmp_path)
    assert "ProGrad/vit_b16_ep50.yaml" in out and "imagenet/ProGrad/vit_b16_ep50_16shots/seed1" in out
