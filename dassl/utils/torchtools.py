"""Checkpoint I/O and weight loading (upstream ``dassl.utils.torchtools`` surface).

Checkpoints written here hold only tensors and plain values, so they load with
``torch.load(weights_only=True)``. Upstream Dassl checkpoints (every model zoo of the CoOp
family) also pickle their LR scheduler and, through it, the optimizer. Those load with
``weights_only=True`` too: the known upstream scheduler and optimizer classes
(``UPSTREAM_PICKLED_CLASSES``) are read into inert stand-ins that only hold their
attributes as data, and nothing of them is ever called. Any other pickled object is still
refused; reading such a file needs the explicit opt-in ``load_checkpoint(path,
weights_only=False)`` or ``DASSL_TRUST_CHECKPOINTS=1``, which unpickles arbitrary objects:
only do it for files you trust.
"""
from __future__ import annotations

import contextlib
import importlib
import os
import os.path as osp
import pickle
import types
import warnings
from collections import OrderedDict
from typing import Any, ContextManager, Dict, Optional

import torch
import torch.nn as nn

from .atomic_io import atomic_write, atomic_write_bytes
from .tools import mkdir_if_missing

__all__ = [
    "CheckpointError",
    "save_checkpoint",
    "load_checkpoint",
    "read_model_checkpoint",
    "load_pretrained_weights",
    "count_num_param",
    "TRUST_ENV_VAR",
    "UPSTREAM_PICKLED_CLASSES",
]

TRUST_ENV_VAR = "DASSL_TRUST_CHECKPOINTS"
POINTER_FILE = "checkpoint"  # text file naming the last epoch checkpoint (upstream name)


class CheckpointError(RuntimeError):
    """A checkpoint file that cannot be used: the message names the file and the fix."""


def _unreadable(fpath: str, err: BaseException) -> CheckpointError:
    reason = (str(err).splitlines() or [""])[0] or type(err).__name__
    return CheckpointError(
        f'Cannot read the checkpoint "{fpath}": it is truncated or not a PyTorch checkpoint '
        f"({type(err).__name__}: {reason}). Copy or download it again, or point --model-dir / "
        "--load-epoch at another checkpoint. A training run resumes from the newest readable "
        "epoch file of its output folder by itself."
    )


def save_checkpoint(
    state: Dict[str, Any],
    save_dir: str,
    is_best: bool = False,
    remove_module_from_keys: bool = True,
    model_name: str = "",
) -> str:
    """Save ``state`` to ``save_dir/model.pth.tar-{state['epoch']}`` (or ``model_name``).

    The write is atomic. Saving an epoch file (no ``model_name``) also re-points the
    ``checkpoint`` text file at it; a named file such as ``model-best.pth.tar`` does
    not (upstream re-pointed it, which broke resume; docs/upstream-differences.md, "Checkpoints and resume"). ``is_best`` also writes
    ``model-best.pth.tar``. Returns the path written.
    """
    mkdir_if_missing(save_dir)
    if remove_module_from_keys:
        # DataParallel prefixes keys with "module."; store them as for a bare model.
        state = dict(state)
        state["state_dict"] = OrderedDict(
            (k[7:] if k.startswith("module.") else k, v) for k, v in state["state_dict"].items()
        )
    fname = model_name or f"model.pth.tar-{state['epoch']}"
    fpath = osp.join(save_dir, fname)
    atomic_write(fpath, lambda f: torch.save(state, f))
    print(f"Checkpoint saved to {fpath}")
    if not model_name:
        atomic_write_bytes(osp.join(save_dir, POINTER_FILE), (fname + "\n").encode())
    if is_best:
        best = osp.join(save_dir, "model-best.pth.tar")
        atomic_write(best, lambda f: torch.save(state, f))
    return fpath


class _UpstreamObject:
    """Stands in for an upstream ``dassl`` class this engine does not define."""

    def __setstate__(self, state: Any) -> None:
        self.__dict__["_state"] = state


#: Classes that upstream Dassl checkpoints pickle inside their ``scheduler`` entry: its
#: warm-up wrappers (``dassl/optim/lr_scheduler.py``), the torch schedulers and optimizers
#: its ``build_lr_scheduler``/``build_optimizer`` make (``dassl/optim/optimizer.py``;
#: ``dassl/optim/radam.py``), and the ``defaultdict(dict)`` of an optimizer's state.
UPSTREAM_PICKLED_CLASSES = (
    "dassl.optim.lr_scheduler.ConstantWarmupScheduler",
    "dassl.optim.lr_scheduler.LinearWarmupScheduler",
    "torch.optim.lr_scheduler.CosineAnnealingLR",
    "torch.optim.lr_scheduler.StepLR",
    "torch.optim.lr_scheduler.MultiStepLR",
    "torch.optim.sgd.SGD",
    "torch.optim.adam.Adam",
    "torch.optim.adamw.AdamW",
    "torch.optim.rmsprop.RMSprop",
    "dassl.optim.radam.RAdam",
)


def _plain_dict(default_factory: Any = None) -> Dict[Any, Any]:
    """Stands in for ``collections.defaultdict(default_factory)``: an empty plain dict."""
    return {}


def _upstream_safe_globals() -> list:
    """``torch.serialization.safe_globals`` entries for ``UPSTREAM_PICKLED_CLASSES``: each path
    maps to an inert stand-in class (never the real one, whose ``__setstate__`` would run), plus
    the ``defaultdict(dict)`` an optimizer's state is pickled as (read as a plain dict: the
    weights-only unpickler fills no other mapping type)."""
    entries: list = [(_plain_dict, "collections.defaultdict"), (dict, "builtins.dict")]
    for path in UPSTREAM_PICKLED_CLASSES:
        name = path.rsplit(".", 1)[1]
        entries.append((type(name, (_UpstreamObject,), {"__module__": __name__, "upstream_class": path}), path))
    return entries


_UPSTREAM_SAFE_GLOBALS = _upstream_safe_globals()


def _upstream_stand_ins() -> ContextManager:
    """The stand-ins, allowed for the ``torch.load`` calls inside the context only. torch < 2.5
    has no ``safe_globals``: there upstream checkpoints still need the opt-in."""
    safe_globals = getattr(torch.serialization, "safe_globals", None)
    return safe_globals(_UPSTREAM_SAFE_GLOBALS) if safe_globals is not None else contextlib.nullcontext()


def _disallowed_global(err: BaseException) -> str:
    """The line of torch's weights-only error that names the refused global."""
    lines = str(err).splitlines()
    return next((line.strip() for line in lines if "GLOBAL" in line), lines[0] if lines else "")


def _remapping_pickle_module() -> types.ModuleType:
    """A ``pickle``-like module whose Unpickler maps unknown ``dassl.*`` classes to stubs."""

    class Unpickler(pickle.Unpickler):
        def find_class(self, module: str, name: str) -> Any:
            if module == "dassl" or module.startswith("dassl."):
                try:
                    return getattr(importlib.import_module(module), name)
                except (ImportError, AttributeError):
                    return type(name, (_UpstreamObject,), {"__module__": "dassl._upstream"})
            return super().find_class(module, name)

    mod = types.ModuleType("dassl_upstream_pickle")
    mod.Unpickler = Unpickler  # type: ignore[attr-defined]
    mod.load = lambda f, **kw: Unpickler(f, **kw).load()  # type: ignore[attr-defined]
    mod.__name__ = "dassl_upstream_pickle"
    return mod


def load_checkpoint(fpath: str, weights_only: Optional[bool] = None) -> Dict[str, Any]:
    """Load a checkpoint onto the CPU (or the GPU it was saved from when CUDA is there).

    ``weights_only=None`` means True unless the environment sets
    ``DASSL_TRUST_CHECKPOINTS=1``. With ``weights_only=True`` the scheduler and optimizer
    objects of upstream checkpoints become inert stand-ins (see ``UPSTREAM_PICKLED_CLASSES``);
    with ``weights_only=False`` arbitrary pickled objects are allowed and unknown upstream
    ``dassl.*`` classes become stubs.
    """
    if not fpath:
        raise ValueError("load_checkpoint() needs a file path, got an empty one")
    if not osp.exists(fpath):
        raise FileNotFoundError(f'Checkpoint not found at "{fpath}"')
    if weights_only is None:
        weights_only = os.environ.get(TRUST_ENV_VAR, "") not in ("1", "true", "True")
    map_location = None if torch.cuda.is_available() else "cpu"
    try:
        if weights_only:
            with _upstream_stand_ins():
                return torch.load(fpath, map_location=map_location, weights_only=True)
        return torch.load(
            fpath, map_location=map_location, weights_only=False, pickle_module=_remapping_pickle_module()
        )
    except pickle.UnpicklingError as e:
        if weights_only and "Weights only load failed" in str(e) and "GLOBAL" in str(e):
            raise CheckpointError(
                f'"{fpath}" holds pickled Python objects beyond the scheduler and optimizer classes '
                f"of upstream Dassl checkpoints, so it does not load with weights_only=True. If you "
                f"trust the file, set {TRUST_ENV_VAR}=1 or call load_checkpoint(path, weights_only=False).\n"
                f"torch said: {_disallowed_global(e)}"
            ) from None
        raise _unreadable(fpath, e) from None
    except (RuntimeError, EOFError, KeyError, IndexError, ValueError, OSError) as e:
        if isinstance(e, (FileNotFoundError, PermissionError)):
            raise
        raise _unreadable(fpath, e) from None


def read_model_checkpoint(fpath: str) -> Dict[str, Any]:
    """``load_checkpoint`` for a file a trainer saved: a dict with a ``state_dict`` mapping.

    Anything else (a bare state dict, another program's file) raises
    :class:`CheckpointError` naming the file and what it holds instead.
    """
    checkpoint = load_checkpoint(fpath)
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("state_dict"), dict):
        found = sorted(checkpoint)[:8] if isinstance(checkpoint, dict) else type(checkpoint).__name__
        raise CheckpointError(
            f'"{fpath}" is not a trainer checkpoint: expected a dict with a "state_dict" entry '
            f"(as save_checkpoint writes), found {found}. Point --model-dir at a training output "
            "folder (it holds <name>/model.pth.tar-N)."
        )
    return checkpoint


def load_pretrained_weights(model: nn.Module, weight_path: str) -> None:
    """Load the matching (same name and shape) weights of ``weight_path`` into ``model``."""
    checkpoint = load_checkpoint(weight_path)
    state_dict = checkpoint.get("state_dict", checkpoint)
    model_dict = model.state_dict()
    matched, discarded = OrderedDict(), []
    for k, v in state_dict.items():
        k = k[7:] if k.startswith("module.") else k
        if k in model_dict and model_dict[k].size() == v.size():
            matched[k] = v
        else:
            discarded.append(k)
    if not matched:
        warnings.warn(
            f'The pretrained weights "{weight_path}" cannot be loaded: no key matches the model '
            "(check the key names)"
        )
        return
    model_dict.update(matched)
    model.load_state_dict(model_dict)
    print(f'Successfully loaded pretrained weights from "{weight_path}"')
    if discarded:
        print(f"Layers discarded due to unmatched keys or size: {discarded}")


def count_num_param(model: Optional[nn.Module] = None, params=None) -> int:
    """Number of elements in ``model``'s parameters (or in ``params``)."""
    if model is not None:
        return sum(p.numel() for p in model.parameters())
    if params is not None:
        total = 0
        for p in params:
            if isinstance(p, dict):
                total += sum(q.numel() for q in p["params"])
            else:
                total += p.numel()
        return total
    raise ValueError("count_num_param() needs a model or params")
