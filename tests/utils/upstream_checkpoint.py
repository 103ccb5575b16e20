"""Fabricate checkpoint files as upstream Dassl writes them (every CoOp-family model zoo).

Upstream ``TrainerBase.save_model`` (Dassl ``dassl/engine/trainer.py``) saves
``{"state_dict", "epoch", "optimizer", "scheduler", "val_result"}`` where ``scheduler`` is
the ``state_dict()`` of its warm-up wrapper: the wrapper's attributes, among them the
*pickled* torch scheduler it wraps (``successor``), which holds the pickled optimizer. Here
the same objects are made with the real torch classes and a warm-up wrapper written for
the test, pickled under upstream's class path ``dassl.optim.lr_scheduler.ConstantWarmupScheduler``.
"""
from __future__ import annotations

import contextlib
import os
from typing import Dict, Iterator

import torch

import dassl.optim.lr_scheduler as engine_lr_scheduler

UPSTREAM_WARMUP_PATH = "dassl.optim.lr_scheduler.ConstantWarmupScheduler"


class ConstantWarmupScheduler(torch.optim.lr_scheduler.LRScheduler):
    """A constant-LR warm-up that hands over to ``successor`` (the shape of upstream's class)."""

    def __init__(self, optimizer: torch.optim.Optimizer, successor, warmup_epoch: int, cons_lr: float) -> None:
        self.successor = successor
        self.warmup_epoch = warmup_epoch
        self.cons_lr = cons_lr
        super().__init__(optimizer)

    def get_lr(self):
        if self.last_epoch < self.warmup_epoch:
            return [self.cons_lr for _ in self.base_lrs]
        return self.successor.get_last_lr()


@contextlib.contextmanager
def upstream_class_path() -> Iterator[None]:
    """While pickling, the wrapper lives at upstream's path (pickle looks the class up there)."""
    ConstantWarmupScheduler.__module__ = engine_lr_scheduler.__name__
    setattr(engine_lr_scheduler, "ConstantWarmupScheduler", ConstantWarmupScheduler)
    try:
        yield
    finally:
        delattr(engine_lr_scheduler, "ConstantWarmupScheduler")
        ConstantWarmupScheduler.__module__ = __name__


def upstream_scheduler(params, epochs: int = 5, lr: float = 0.0035) -> ConstantWarmupScheduler:
    """SGD + cosine + one constant warm-up epoch over ``params``, stepped once (as after training)."""
    optimizer = torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=5e-4)
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, epochs)
    scheduler = ConstantWarmupScheduler(optimizer, cosine, warmup_epoch=1, cons_lr=1e-5)
    optimizer.step()  # no gradients: changes nothing, but the epoch's order is as in training
    scheduler.step()
    return scheduler


def save_upstream_checkpoint(
    directory: str,
    name: str,
    state_dict: Dict[str, torch.Tensor],
    epoch: int,
    pickle_wrapper: bool = False,
) -> str:
    """Write ``<directory>/<name>/model.pth.tar-<epoch>`` as upstream Dassl does; return its path.

    The optimizer covers every tensor of ``state_dict`` (upstream MaPLe hands the whole
    model to ``build_optimizer``). ``pickle_wrapper`` also stores the wrapper object itself
    (some forks pickle the scheduler, not its ``state_dict()``).
    """
    params = [torch.nn.Parameter(v.detach().clone().float()) for v in state_dict.values() if v.is_floating_point()]
    scheduler = upstream_scheduler(params, epochs=max(epoch, 1))
    folder = os.path.join(directory, name)
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f"model.pth.tar-{epoch}")
    checkpoint: Dict[str, object] = {
        "state_dict": state_dict,
        "epoch": epoch,
        "optimizer": scheduler.optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "val_result": None,
    }
    with upstream_class_path():
        if pickle_wrapper:
            checkpoint["scheduler_object"] = scheduler
        torch.save(checkpoint, path)
    return path


def pickled_globals(path: str) -> set:
    """The ``module.name`` globals a checkpoint file pickles (to show what a test covers)."""
    import pickletools
    import zipfile

    with zipfile.ZipFile(path) as archive:
        data = archive.read(next(n for n in archive.namelist() if n.endswith("data.pkl")))
    found, strings = set(), []
    for op, arg, _ in pickletools.genops(data):
        if op.name == "GLOBAL":
            found.add(arg.replace(" ", ".").replace("__builtin__.", "builtins."))
        elif op.name in ("SHORT_BINUNICODE", "BINUNICODE"):
            strings.append(arg)
        elif op.name == "STACK_GLOBAL":
            found.add(".".join(strings[-2:]))
    return found


__all__ = [
    "ConstantWarmupScheduler",
    "UPSTREAM_WARMUP_PATH",
    "pickled_globals",
    "save_upstream_checkpoint",
    "upstream_scheduler",
]
