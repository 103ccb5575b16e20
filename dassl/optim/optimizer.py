"""``build_optimizer`` (the semantics of upstream Dassl's ``dassl/optim/optimizer.py``)."""
from __future__ import annotations

import warnings
from typing import Any, Dict, Iterable, List, Union

import torch
import torch.nn as nn

__all__ = ["build_optimizer", "AVAI_OPTIMS"]

AVAI_OPTIMS = ["adam", "amsgrad", "sgd", "rmsprop", "radam", "adamw"]

ParamsLike = Union[nn.Module, Iterable[torch.Tensor], Iterable[Dict[str, Any]]]


def _param_groups(model_or_params: ParamsLike, optim_cfg) -> Union[List[torch.Tensor], List[Dict[str, Any]]]:
    if isinstance(model_or_params, nn.Module):
        model = model_or_params
        if not optim_cfg.STAGED_LR:
            # All parameters, as upstream: frozen ones never get a grad and are skipped.
            return list(model.parameters())
        new_layers = optim_cfg.NEW_LAYERS
        if isinstance(new_layers, str):
            new_layers = [new_layers]
        if not new_layers:
            warnings.warn("OPTIM.STAGED_LR is True but OPTIM.NEW_LAYERS is empty")
        module = model.module if isinstance(model, nn.DataParallel) else model
        base, new = [], []
        for name, child in module.named_children():
            (new if name in new_layers else base).extend(child.parameters())
        return [
            {"params": base, "lr": optim_cfg.LR * optim_cfg.BASE_LR_MULT},
            {"params": new},
        ]
    params = list(model_or_params)
    if not params:
        raise ValueError("build_optimizer() got no parameters to optimise")
    if optim_cfg.STAGED_LR:
        warnings.warn("OPTIM.STAGED_LR is ignored when build_optimizer() is given parameters, not a module")
    return params


def build_optimizer(model_or_params: ParamsLike, optim_cfg) -> torch.optim.Optimizer:
    """Build the optimizer named by ``optim_cfg.NAME`` over a module or a param list/groups."""
    name = optim_cfg.NAME
    if name not in AVAI_OPTIMS:
        raise ValueError(f'OPTIM.NAME "{name}" is not supported; choose from {AVAI_OPTIMS}')
    params = _param_groups(model_or_params, optim_cfg)
    lr, wd = optim_cfg.LR, optim_cfg.WEIGHT_DECAY
    betas = (optim_cfg.ADAM_BETA1, optim_cfg.ADAM_BETA2)
    eps = optim_cfg.ADAM_EPS
    if name == "sgd":
        return torch.optim.SGD(
            params,
            lr=lr,
            momentum=optim_cfg.MOMENTUM,
            weight_decay=wd,
            dampening=optim_cfg.SGD_DAMPNING,
            nesterov=optim_cfg.SGD_NESTEROV,
        )
    if name in ("adam", "amsgrad"):
        return torch.optim.Adam(params, lr=lr, weight_decay=wd, betas=betas, eps=eps, amsgrad=name == "amsgrad")
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=wd, betas=betas, eps=eps)
    if name == "rmsprop":
        return torch.optim.RMSprop(
            params, lr=lr, momentum=optim_cfg.MOMENTUM, weight_decay=wd, alpha=optim_cfg.RMSPROP_ALPHA
        )
    return torch.optim.RAdam(params, lr=lr, weight_decay=wd, betas=betas, eps=eps)
