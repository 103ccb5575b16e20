"""A toy world for the engine tests: a registered image-folder dataset and a linear TrainerX.

Images are tiny coloured PNGs written to a temp dir; the model is Flatten -> Dropout ->
Linear, so two epochs take well under a second on one CPU thread.
"""
from __future__ import annotations

import os
import random
import os.path as osp
from typing import List

import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

from dassl.config import get_cfg_default
from dassl.data.datasets import DATASET_REGISTRY, DatasetBase, Datum
from dassl.engine import TRAINER_REGISTRY, TrainerX
from dassl.metrics import compute_accuracy
from dassl.optim import build_lr_scheduler, build_optimizer

torch.set_num_threads(1)

CLASSNAMES = ["red", "green", "blue"]
COLORS = [(220, 30, 30), (30, 200, 40), (30, 40, 220)]
IMG = 8


def _read_folder(folder: str) -> List[Datum]:
    items = []
    for label, cname in enumerate(CLASSNAMES):
        cdir = osp.join(folder, cname)
        for fname in sorted(os.listdir(cdir)):
            items.append(Datum(impath=osp.join(cdir, fname), label=label, classname=cname))
    return items


@DATASET_REGISTRY.register()
class EngineToyDataset(DatasetBase):
    """``<ROOT>/engine_toy/{train,test}/<class>/*.png``."""

    dataset_dir = "engine_toy"

    def __init__(self, cfg) -> None:
        root = osp.join(cfg.DATASET.ROOT, self.dataset_dir)
        train = _read_folder(osp.join(root, "train"))
        test = _read_folder(osp.join(root, "test"))
        train = self.generate_fewshot_dataset(train, num_shots=cfg.DATASET.NUM_SHOTS)
        super().__init__(train_x=train, val=test, test=test)


@DATASET_REGISTRY.register()
class EngineToyTestOnly(DatasetBase):
    dataset_dir = "engine_toy"

    def __init__(self, cfg) -> None:
        test = _read_folder(osp.join(cfg.DATASET.ROOT, self.dataset_dir, "test"))
        super().__init__(train_x=None, test=test)


@TRAINER_REGISTRY.register()
class EngineToyTrainer(TrainerX):
    """Linear classifier on raw pixels; counts its test hooks."""

    def build_model(self) -> None:
        self.model = nn.Sequential(
            nn.Flatten(), nn.Dropout(0.2), nn.Linear(3 * IMG * IMG, self.num_classes)
        ).to(self.device)
        self.optim = build_optimizer(self.model, self.cfg.OPTIM)
        self.sched = build_lr_scheduler(self.optim, self.cfg.OPTIM)
        self.register_model("model", self.model, self.optim, self.sched)
        self.hook_calls: List[str] = []

    def forward_backward(self, batch):
        image, label, _ = self.parse_batch_train(batch)
        output = self.model(image)
        loss = F.cross_entropy(output, label)
        self.model_backward_and_update(loss)
        if (self.batch_idx + 1) == self.num_batches:
            self.update_lr()
        return {"loss": loss.item(), "acc": compute_accuracy(output, label)[0].item()}

    def before_test(self) -> None:
        self.hook_calls.append("before_test")

    def after_test(self) -> None:
        self.hook_calls.append("after_test")

    def checkpoint_extras(self):
        return {"classnames": list(self.dm.dataset.classnames)}


def make_toy_tree(root: str, n_train: int = 6, n_test: int = 3) -> str:
    for split, n in (("train", n_train), ("test", n_test)):
        for label, cname in enumerate(CLASSNAMES):
            cdir = osp.join(root, "engine_toy", split, cname)
            os.makedirs(cdir, exist_ok=True)
            for i in range(n):
                # Class colour plus heavy per-pixel noise (a local RNG: the global ones
                # belong to the code under test), so that crops, flips and dropout matter
                # and the loss does not saturate.
                rng = random.Random(f"{split}-{label}-{i}")
                pixels = [
                    tuple(min(255, max(0, c + rng.randint(-120, 120))) for c in COLORS[label])
                    for _ in range((IMG + 4) ** 2)
                ]
                img = Image.new("RGB", (IMG + 4, IMG + 4))
                img.putdata(pixels)
                img.save(osp.join(cdir, f"{i:03d}.png"))
    return root


def toy_cfg(root: str, output_dir: str, **overrides):
    """A frozen-free config for the toy trainer; ``overrides`` are KEY=VALUE with dots as __."""
    cfg = get_cfg_default()
    cfg.merge_from_list(
        [
            "DATASET.ROOT", root,
            "DATASET.NAME", "EngineToyDataset",
            "TRAINER.NAME", "EngineToyTrainer",
            "OUTPUT_DIR", output_dir,
            "USE_CUDA", False,
            "SEED", 1,
            "INPUT.SIZE", (IMG, IMG),
            "INPUT.TRANSFORMS", ("random_resized_crop", "random_flip", "normalize"),
            "DATALOADER.NUM_WORKERS", 0,
            "DATALOADER.TRAIN_X.BATCH_SIZE", 4,
            "DATALOADER.TEST.BATCH_SIZE", 5,
            "OPTIM.NAME", "sgd",
            "OPTIM.LR", 0.001,
            "OPTIM.MAX_EPOCH", 2,
            "OPTIM.LR_SCHEDULER", "cosine",
            "OPTIM.WARMUP_EPOCH", 1,
            "OPTIM.WARMUP_TYPE", "constant",
            "TRAIN.PRINT_FREQ", 2,
        ]
    )
    for key, value in overrides.items():
        cfg.merge_from_list([key.replace("__", "."), value])
    return cfg


@TRAINER_REGISTRY.register()
class EngineToyStepTrainer(EngineToyTrainer):
    """The engine's own step: no update_lr call; ``after_backward`` records the gradients."""

    def build_model(self) -> None:
        super().build_model()
        self.seen_gradients: List[torch.Tensor] = []

    def forward_backward(self, batch):
        image, label, _ = self.parse_batch_train(batch)
        loss = F.cross_entropy(self.model(image), label)
        self.model_backward_and_update(loss)
        return {"loss": loss.item()}

    def after_backward(self) -> None:
        self.seen_gradients.append(self.model[2].weight.grad.clone())
