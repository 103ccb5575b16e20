"""``train.py`` runs of a shipped config shrunk to a tiny CLIP and a fabricated dataset: the
arguments and the in-process trainer (for the tests of single methods)."""
from __future__ import annotations

import os.path as osp
from typing import List

import train
from dassl.engine import build_trainer
from dassl.utils import set_random_seed

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def shrunk_run_args(trainer: str, config: str, node: str, data_root: str, clip_path: str, out, *opts: str,
                    subsample: str = "base", epochs: int = 2) -> List[str]:
    """``configs/trainers/<config>.yaml`` on EuroSAT at 32x32: 2 shots, ``epochs`` epochs, fp32."""
    return [
        "--root", data_root, "--seed", "1", "--trainer", trainer, "--output-dir", str(out),
        "--dataset-config-file", osp.join(REPO, "configs/datasets/eurosat.yaml"),
        "--config-file", osp.join(REPO, "configs/trainers", config + ".yaml"),
        "MODEL.BACKBONE.NAME", clip_path, "INPUT.SIZE", "(32, 32)", "DATALOADER.NUM_WORKERS", "0",
        "DATALOADER.TEST.BATCH_SIZE", "10", "DATASET.NUM_SHOTS", "2", "DATASET.SUBSAMPLE_CLASSES", subsample,
        "DATASET.CACHE_DIR", str(out) + "_cache", "OPTIM.MAX_EPOCH", str(epochs), f"TRAINER.{node}.PREC", "fp32",
        *opts,
    ]


def build_from_args(args: List[str]):
    """The trainer ``train.py`` would build from ``args`` (seeded, not run)."""
    parsed = train.build_parser().parse_args(args)
    train.register_components()
    cfg = train.setup_cfg(parsed)
    set_random_seed(cfg.SEED)
    return build_trainer(cfg)
