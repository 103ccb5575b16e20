"""Optimizers and closed-form LR schedules."""
from .lr_scheduler import AVAI_SCHEDS, ClosedFormLRScheduler, build_lr_scheduler
from .optimizer import AVAI_OPTIMS, build_optimizer

__all__ = ["build_optimizer", "build_lr_scheduler", "ClosedFormLRScheduler", "AVAI_OPTIMS", "AVAI_SCHEDS"]
