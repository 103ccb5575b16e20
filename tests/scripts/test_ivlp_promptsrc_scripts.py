"""What the IVLP and PromptSRC scripts run (train.py replaced by a recorder): the config of each
protocol, the epoch the tests load, and PromptSRC's per-dataset few-shot GPA, checked to merge
into the config train.py builds."""
from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import List

import pytest

import train

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture()
def recorder(tmp_path):
    """A PYTHON that records each train.py command line (``python -c`` still runs for real)."""
    record = tmp_path / "commands.txt"
    stub = tmp_path / "python"
    stub.write_text(f'#!/bin/bash\nif [[ "$1" == "-c" ]]; then exec {shlex.quote(sys.executable)} "$@"; fi\n'
                    f'printf "%s\\n" "$*" >> {shlex.quote(str(record))}\n')
    stub.chmod(0o755)
    env = dict(os.environ, DATA=str(tmp_path), OUTPUT=str(tmp_path / "output"), PYTHON=str(stub))
    env.pop("CFG", None)

    def run(script: str, *args: str, **extra_env: str) -> List[str]:
        result = subprocess.run(["bash", str(REPO / "scripts" / script), *args], env=dict(env, **extra_env),
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        lines = record.read_text().splitlines()
        record.unlink()
        assert len(lines) == 1
        return lines[0].split()

    return run


def cfg_of(command: List[str]):
    """The config train.py would build from a recorded command line."""
    parsed = train.build_parser().parse_args(command[1:])  # command[0] is train.py
    train.register_components()
    return train.setup_cfg(parsed)


@pytest.mark.parametrize("dataset, mean, std", [("dtd", 45, 5), ("eurosat", 45, 5), ("caltech101", 30, 30),
                                                ("imagenet", 30, 30), ("oxford_flowers", 45, 5)])
def test_promptsrc_fewshot_gpa_per_dataset(recorder, dataset, mean, std):
    command = recorder("promptsrc/fewshot.sh", dataset, "4", "1")
    assert command[command.index("--config-file") + 1].endswith("PromptSRC/vit_b16_c2_ep50_batch4_4+4ctx_few_shot.yaml")
    assert f"/fewshot/{dataset}/shots_4/PromptSRC/vit_b16_c2_ep50_batch4_4+4ctx_few_shot/seed1" in " ".join(command)
    cfg = cfg_of(command)
    assert (cfg.TRAINER.PROMPTSRC.GPA_MEAN, cfg.TRAINER.PROMPTSRC.GPA_STD) == (mean, std)
    assert cfg.OPTIM.MAX_EPOCH == 50 and cfg.DATASET.NUM_SHOTS == 4


def test_promptsrc_fewshot_overrides_win_and_other_configs_keep_their_gpa(recorder):
    cfg = cfg_of(recorder("promptsrc/fewshot.sh", "dtd", "4", "1", "TRAINER.PROMPTSRC.GPA_MEAN", "40"))
    assert (cfg.TRAINER.PROMPTSRC.GPA_MEAN, cfg.TRAINER.PROMPTSRC.GPA_STD) == (40, 5)
    cfg = cfg_of(recorder("promptsrc/fewshot.sh", "dtd", "4", "1", CFG="vit_b16_c2_ep20_batch4_4+4ctx"))
    assert (cfg.TRAINER.PROMPTSRC.GPA_MEAN, cfg.TRAINER.PROMPTSRC.GPA_STD) == (15, 1)


def test_promptsrc_cross_dataset_uses_its_20_epoch_config(recorder, tmp_path):
    train_cmd = recorder("promptsrc/xd_train.sh", "1")
    cfg = cfg_of(train_cmd)
    assert cfg.TRAINER.PROMPTSRC.PROMPT_DEPTH_TEXT == 3 and cfg.TRAINER.PROMPTSRC.GPA_MEAN == 6
    model_dir = tmp_path / "output" / "imagenet" / "PromptSRC" / "vit_b16_c2_ep20_batch4_4+4ctx_cross_datasets_16shots" / "seed1"
    model_dir.mkdir(parents=True)
    test_cmd = recorder("promptsrc/xd_test.sh", "imagenet_a", "1")
    assert test_cmd[test_cmd.index("--model-dir") + 1] == str(model_dir)
    assert test_cmd[test_cmd.index("--load-epoch") + 1] == "20"


def test_ivlp_cross_dataset_loads_the_epoch_it_trained(recorder, tmp_path):
    """Upstream's xd_test_ivlp.sh loads epoch 2 of a 5-epoch config (FileNotFoundError)."""
    cfg = cfg_of(recorder("ivlp/xd_train.sh", "imagenet", "1"))
    assert cfg.OPTIM.MAX_EPOCH == 5 and cfg.TRAINER.IVLP.PROMPT_DEPTH_VISION == 12
    (tmp_path / "output" / "imagenet" / "IVLP" / "vit_b16_c2_ep5_batch4_2+2ctx_16shots" / "seed1").mkdir(parents=True)
    test_cmd = recorder("ivlp/xd_test.sh", "caltech101", "1")
    assert test_cmd[test_cmd.index("--load-epoch") + 1] == "5"
    cfg = cfg_of(recorder("ivlp/fewshot.sh", "dtd", "2", "1", CFG="vit_b16_c2_ep5_batch4_4ctx_language_only"))
    assert (cfg.TRAINER.IVLP.N_CTX_VISION, cfg.TRAINER.IVLP.PROMPT_DEPTH_VISION, cfg.TRAINER.IVLP.N_CTX_TEXT) == (0, 0, 4)
