"""Fixtures of the SemPT tests: a tiny random CLIP, a fabricated EuroSAT tree and an
attribute file for its classes, and a config factory."""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch

import datasets  # noqa: F401  (registers the readers)
import trainers

trainers.register_all()
from tests.utils.fabricate import make_eurosat_tree
from tests.utils.tiny_clip import make_tiny_clip

warnings.filterwarnings("ignore", message="pkg_resources is deprecated")

EUROSAT_CLASSES = [
    "Annual Crop Land", "Forest", "Herbaceous Vegetation Land", "Highway or Road", "Industrial Buildings",
    "Pasture Land", "Permanent Crop Land", "Residential Buildings", "River", "Sea or Lake",
]
ATTRIBUTES = ["colour", "layout", "texture", "lines"]


def write_attribute_file(path: Path, classes=EUROSAT_CLASSES, attributes=ATTRIBUTES, sentences_per_attr=1) -> Path:
    data = {
        "dataset": "EuroSAT",
        "domain": "satellite images",
        "attributes": [{"name": a, "definition": f"the {a}"} for a in attributes],
        "classes": [
            {
                "name": c,
                "descriptions": {
                    a: [f"{c} shows a distinctive {a} number {i} {j}." for j in range(sentences_per_attr)]
                    for a in attributes
                },
            }
            for i, c in enumerate(classes)
        ],
        "generator": {"procedure": "test fixture"},
    }
    path.write_text(json.dumps(data))
    return path


@pytest.fixture(scope="session", autouse=True)
def _one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def tiny_clip_path(tmp_path_factory) -> str:
    return str(make_tiny_clip(tmp_path_factory.mktemp("clip") / "tiny_vit.pt", image_resolution=32))


@pytest.fixture(scope="session")
def data_root(tmp_path_factory) -> str:
    return make_eurosat_tree(tmp_path_factory.mktemp("data"), n_per_class=10)


@pytest.fixture()
def attribute_file(tmp_path) -> Path:
    return write_attribute_file(tmp_path / "eurosat_attributes.json")


@pytest.fixture()
def make_cfg(tmp_path, tiny_clip_path, data_root, attribute_file):
    """``make_cfg(trainer="SemPT", subsample="base", **{"TRAINER.SEMPT.X": v})`` -> frozen cfg."""
    from dassl.config import get_cfg_default
    from trainers.config import extend_cfg

    def factory(trainer: str = "SemPT", subsample: str = "base", output: str = "out", epochs: int = 2, **overrides):
        cfg = get_cfg_default()
        extend_cfg(cfg)
        cfg.TRAINER.NAME = trainer
        cfg.SEED = 1
        cfg.USE_CUDA = False
        cfg.OUTPUT_DIR = str(tmp_path / output)
        cfg.DATASET.ROOT = data_root
        cfg.DATASET.NAME = "EuroSAT"
        cfg.DATASET.NUM_SHOTS = 4
        cfg.DATASET.SUBSAMPLE_CLASSES = subsample
        cfg.DATASET.CACHE_DIR = str(tmp_path / "cache")
        cfg.DATALOADER.NUM_WORKERS = 0
        cfg.DATALOADER.TRAIN_X.BATCH_SIZE = 8
        cfg.DATALOADER.TEST.BATCH_SIZE = 16
        cfg.INPUT.SIZE = (32, 32)
        cfg.INPUT.TRANSFORMS = ("normalize",)
        cfg.MODEL.BACKBONE.NAME = tiny_clip_path
        cfg.OPTIM.NAME = "sgd"
        cfg.OPTIM.LR = 0.05
        cfg.OPTIM.MAX_EPOCH = epochs
        cfg.OPTIM.LR_SCHEDULER = "cosine"
        cfg.TRAIN.PRINT_FREQ = 1
        cfg.TRAINER.SEMPT.ATTRIBUTE_FILE = str(attribute_file)
        cfg.TRAINER.SEMPT.DESC_CACHE_DIR = str(tmp_path / "desc_cache")
        for node in ("COOP", "KGCOOP", "SEMPT"):
            cfg.TRAINER[node].PREC = "fp32"
        for key, value in overrides.items():
            node = cfg
            *parents, leaf = key.split(".")
            for part in parents:
                node = node[part]
            node[leaf] = value
        cfg.freeze()
        return cfg

    return factory
