"""``TrainerBase`` / ``SimpleTrainer`` / ``TrainerX``: upstream Dassl's lifecycle (its ``dassl/engine/trainer.py``).

Beyond upstream (docs/upstream-differences.md, "Checkpoints and resume"):
- every epoch writes ``<output>/<name>/model.pth.tar-<epoch>`` atomically with the model,
  optimizer, scheduler state and the RNG states (Python, NumPy, torch, CUDA and the
  training sampler's generator); the previous epoch's file is then removed unless
  ``TRAIN.CHECKPOINT_FREQ`` keeps it. A resumed run therefore ends with the same
  weights as an uninterrupted one;
- the ``checkpoint`` pointer file only ever names the last epoch file (saving
  ``model-best.pth.tar`` does not re-point it);
- ``load_model`` never silently keeps a fresh model: a missing checkpoint raises
  ``FileNotFoundError`` naming the path and the ``--model-dir``/``--load-epoch`` flags;
- the optimisation step is the engine's: ``model_backward_and_update`` scales the loss
  when ``self.scaler`` (a ``torch.amp.GradScaler``) is set, unscales the gradients and
  calls the ``after_backward()`` hook (gradient surgery, clipping) before the optimizers
  step; ``TrainerX.run_epoch`` steps the learning-rate schedules once per epoch, after
  its last batch (trainers written for upstream Dassl, which call ``update_lr()`` on the
  last batch themselves, are not stepped twice);
- hooks ``before_test()``/``after_test()`` wrap the evaluation loop, whose step is
  ``evaluate_batch(batch) -> (output, label)`` (upstream's ``parse_batch_test`` then
  ``model_inference``, overridable as one piece), and
  ``checkpoint_extras()`` is merged into saved checkpoints; the extras of loaded
  checkpoints are returned by ``load_model`` and kept in ``self.loaded_extras``, and each
  checkpoint's extras reach ``before_load_state_dict(name, extras)`` before its state dict
  is loaded (e.g. to skip a head built for another class set);
- before each epoch the training datasets are told the epoch (``set_data_epoch``), since
  each item's augmentation is seeded by (seed, epoch, index) (``dassl/data/data_manager.py``);
  every pass over a loader (an epoch, an evaluation) runs inside the ``data_pass(loader)``
  context, where a trainer can prepare what the pass reads (e.g. cached image features);
- training never resumes from a folder whose run record (``dassl/run_record.py``) holds
  another config (``check_resumable``);
- tensorboard is used only if it is installed.
"""
from __future__ import annotations

import contextlib
import datetime
import os
import os.path as osp
import re
import time
from collections import OrderedDict
from typing import Any, Callable, ContextManager, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn as nn
from tqdm import tqdm

from dassl import run_record
from dassl.data import DataManager
from dassl.evaluation import build_evaluator
from dassl.utils import (
    AverageMeter,
    CheckpointError,
    MetricMeter,
    get_rng_state,
    read_model_checkpoint,
    save_checkpoint,
    set_rng_state,
)
from dassl.utils.atomic_io import DiskFullError, remove_temporaries
from dassl.utils.torchtools import POINTER_FILE

from .cost import RunCost, batch_size, measured

__all__ = ["TrainerBase", "SimpleTrainer", "TrainerX"]

# Keys of a saved checkpoint that belong to the engine; anything else is an "extra".
RESERVED_KEYS = ("state_dict", "epoch", "optimizer", "scheduler", "val_result", "train_state")
BEST_NAME = "model-best.pth.tar"
_EPOCH_FILE = re.compile(r"^model\.pth\.tar-(\d+)$")


def _epoch_files(model_dir: str) -> Dict[int, str]:
    """``{epoch: path}`` of the ``model.pth.tar-<epoch>`` files in ``model_dir``."""
    if not osp.isdir(model_dir):
        return {}
    found = {}
    for fname in os.listdir(model_dir):
        m = _EPOCH_FILE.match(fname)
        if m:
            found[int(m.group(1))] = osp.join(model_dir, fname)
    return found


def _last_epoch(model_dir: str) -> Optional[int]:
    """The epoch of the last saved checkpoint: the pointer file, else the highest number."""
    files = _epoch_files(model_dir)
    pointer = osp.join(model_dir, POINTER_FILE)
    if osp.isfile(pointer):
        with open(pointer) as f:
            m = _EPOCH_FILE.match(f.read().strip())
        if m and int(m.group(1)) in files:
            return int(m.group(1))
    return max(files) if files else None


def _is_ignored(key: str, ignored: Sequence[str]) -> bool:
    return any(key == s or key.endswith("." + s) for s in ignored)


def check_resumable(directory: str, cfg) -> None:
    """Refuse to resume from a folder whose run record (``dassl/run_record.py``) was made
    with another config: its epochs belong to other numbers. A folder without a record
    (older, or upstream's) resumes as before."""
    record = run_record.read_record(directory) if osp.isdir(directory) else None
    if record is None:
        return
    keys = run_record.result_keys(cfg)
    diffs = run_record.differences(record["keys"], keys) if record["fingerprint"] != run_record.fingerprint(keys) else []
    if diffs:
        raise RuntimeError(
            f'Cannot resume from "{directory}": its run was made with another config:\n'
            f"{run_record.format_differences(diffs)}\n"
            "Resume it with its own config, or train into another folder."
        )


class LoaderPass:
    """One pass over ``loader`` inside ``context(loader)``: entered before the first batch,
    left after the last; ``len`` is the loader's (for progress bars)."""

    def __init__(self, loader, context: Callable[[Any], ContextManager]) -> None:
        self.loader = loader
        self.context = context

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[Any]:
        with self.context(self.loader):
            yield from self.loader


class TrainerBase:
    """Model registry, checkpoints and the epoch loop."""

    #: State-dict keys (or dotted suffixes, e.g. ``"token_prefix"``) that ``load_model``
    #: drops from checkpoints and allows to be missing: buffers a trainer rebuilds from
    #: the current class names.
    ignored_checkpoint_keys: Tuple[str, ...] = ()

    def __init__(self) -> None:
        self._models: "OrderedDict[str, nn.Module]" = OrderedDict()
        self._optims: "OrderedDict[str, Optional[torch.optim.Optimizer]]" = OrderedDict()
        self._scheds: "OrderedDict[str, Any]" = OrderedDict()
        self._writer = None
        self.loaded_extras: Dict[str, Any] = {}
        self.best_result = -np.inf
        #: Set to a ``torch.amp.GradScaler`` to train with a scaled loss (fp16 autocast).
        self.scaler: Optional[torch.amp.GradScaler] = None
        self._lr_stepped_epoch: Optional[int] = None
        #: Wall time and images per phase of this run (``dassl.engine.cost``; ``train.py`` writes cost.json).
        self.cost = RunCost()

    # ------------------------------------------------------------------ registry
    def register_model(self, name: str = "model", model: Optional[nn.Module] = None, optim=None, sched=None) -> None:
        if self.__dict__.get("_models") is None:
            raise AttributeError("Cannot register a model before TrainerBase.__init__() has run")
        if name in self._models:
            raise KeyError(f'A model named "{name}" is already registered')
        if model is None:
            raise ValueError(f'register_model("{name}") needs a model')
        self._models[name] = model
        self._optims[name] = optim
        self._scheds[name] = sched

    def get_model_names(self, names: Union[None, str, Sequence[str]] = None) -> List[str]:
        registered = list(self._models.keys())
        if names is None:
            return registered
        names = [names] if isinstance(names, str) else list(names)
        for name in names:
            if name not in registered:
                raise KeyError(f'No model registered as "{name}"; registered: {registered}')
        return names

    # -------------------------------------------------------------- checkpoints
    def checkpoint_extras(self) -> Dict[str, Any]:
        """Extra (plain or tensor) values merged into every saved checkpoint."""
        return {}

    def _train_state(self) -> Dict[str, Any]:
        loader = getattr(self, "train_loader_x", None)
        generator = getattr(loader, "generator", None)
        return {
            "rng": get_rng_state(),
            "sampler_generator": generator.get_state() if generator is not None else None,
            # SEED, or the value an unseeded run drew: the resumed epochs augment as the lost ones would have.
            "augment_seed": getattr(getattr(loader, "dataset", None), "augment_seed", None),
            "best_result": float(self.best_result),
        }

    def save_model(
        self,
        epoch: int,
        directory: str,
        is_best: bool = False,
        val_result: Optional[float] = None,
        model_name: str = "",
    ) -> None:
        """Save every registered model to ``directory/<name>/``.

        Without ``model_name`` the file is ``model.pth.tar-{epoch + 1}`` and carries the
        training state needed to resume.
        """
        extras = self.checkpoint_extras()
        clash = set(extras) & set(RESERVED_KEYS)
        if clash:
            raise KeyError(f"checkpoint_extras() uses reserved checkpoint keys {sorted(clash)}")
        train_state = None if model_name else self._train_state()
        for name in self.get_model_names():
            optim, sched = self._optims[name], self._scheds[name]
            state = {
                "state_dict": self._models[name].state_dict(),
                "epoch": epoch + 1,
                "optimizer": optim.state_dict() if optim is not None else None,
                "scheduler": sched.state_dict() if sched is not None else None,
                "val_result": val_result,
                **extras,
            }
            if train_state is not None:
                state["train_state"] = train_state
            save_checkpoint(state, osp.join(directory, name), is_best=is_best, model_name=model_name)

    def resume_model_if_exist(self, directory: str) -> int:
        """Restore the newest readable epoch checkpoint in ``directory``; return the epoch to start from.

        The last two epoch files are kept while training (see ``after_epoch``), so a latest
        file that cannot be read (a disk fault, a copy cut short) is reported and training
        resumes, exactly, from the one before it.
        """
        names = self.get_model_names()
        saved = [set(_epoch_files(osp.join(directory, name))) for name in names]
        # If a crash hit between two models' saves, only epochs complete for all count.
        epochs = sorted(set.intersection(*saved), reverse=True) if names and all(saved) else []
        if not epochs:
            print("No checkpoint found, train from scratch")
            return 0
        for epoch in epochs:
            try:
                checkpoints = {
                    name: read_model_checkpoint(osp.join(directory, name, f"model.pth.tar-{epoch}"))
                    for name in names
                }
            except CheckpointError as err:
                print(f"Skipping an unreadable checkpoint of epoch {epoch}: {err}")
                continue
            print(f"Found checkpoint at {directory} (will resume training)")
            self._restore_training_state(directory, epoch, checkpoints)
            return epoch
        raise CheckpointError(
            f"None of the epoch checkpoints in {directory} (epochs {sorted(epochs)}) can be read, so "
            "training cannot resume. Move them away (or delete the output folder) to train from scratch."
        )

    def _restore_training_state(self, directory: str, epoch: int, checkpoints: Dict[str, Dict[str, Any]]) -> None:
        train_state = None
        for name, checkpoint in checkpoints.items():
            print(f'Loading checkpoint from "{osp.join(directory, name, f"model.pth.tar-{epoch}")}"')
            self._models[name].load_state_dict(checkpoint["state_dict"])
            if self._optims[name] is not None and checkpoint.get("optimizer") is not None:
                self._optims[name].load_state_dict(checkpoint["optimizer"])
            if self._scheds[name] is not None and checkpoint.get("scheduler") is not None:
                self._scheds[name].load_state_dict(checkpoint["scheduler"])
            train_state = train_state or checkpoint.get("train_state")
            self.loaded_extras.update({k: v for k, v in checkpoint.items() if k not in RESERVED_KEYS})
        if train_state is None:
            print("Note: the checkpoint holds no RNG state; the resumed run will not repeat the original")
        else:
            set_rng_state(train_state["rng"])
            loader = getattr(self, "train_loader_x", None)
            generator = getattr(loader, "generator", None)
            if generator is not None and train_state["sampler_generator"] is not None:
                generator.set_state(train_state["sampler_generator"])
            if train_state.get("augment_seed") is not None and hasattr(getattr(loader, "dataset", None), "augment_seed"):
                loader.dataset.augment_seed = train_state["augment_seed"]
            self.best_result = train_state["best_result"]
        print(f"Previous epoch: {epoch}")

    def checkpoint_path(self, directory: str, name: str, epoch: Optional[int] = None) -> str:
        """The file ``load_model`` reads for ``name``.

        ``epoch`` given: ``model.pth.tar-{epoch}``; otherwise ``model-best.pth.tar`` if it
        exists, else the last saved epoch.
        """
        model_dir = osp.join(directory, name)
        saved = sorted(_epoch_files(model_dir))
        if epoch is not None:
            fpath = osp.join(model_dir, f"model.pth.tar-{epoch}")
        elif osp.isfile(osp.join(model_dir, BEST_NAME)):
            fpath = osp.join(model_dir, BEST_NAME)
        else:
            last = _last_epoch(model_dir)
            fpath = osp.join(model_dir, f"model.pth.tar-{last}" if last is not None else BEST_NAME)
        if not osp.isfile(fpath):
            raise FileNotFoundError(
                f'No checkpoint at "{fpath}". --model-dir must be a training output directory '
                f"(holding {name}/model.pth.tar-N) and --load-epoch N an epoch saved there; "
                f"saved epochs found: {saved or 'none'}"
            )
        return fpath

    def translate_checkpoint(self, name: str, state_dict: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """Map a loaded state dict's keys onto the module registered as ``name`` (``load_model``).

        The identity here; a trainer whose upstream repository names its parameters
        differently (or saves all of CLIP next to them) overrides this so that the
        upstream model zoo's checkpoints load.
        """
        return state_dict

    def before_load_state_dict(self, name: str, extras: Dict[str, Any]) -> None:
        """Hook: called by ``load_model`` with a checkpoint's extras (what ``checkpoint_extras``
        saved) before its state dict is loaded into model ``name``; e.g. to skip a head that
        depends on a class set the checkpoint was not trained on (extend
        ``self.ignored_checkpoint_keys``, or change the model)."""

    def load_model(self, directory: str, epoch: Optional[int] = None) -> Dict[str, Any]:
        """Load every registered model's weights from ``directory`` (see ``checkpoint_path``).

        Keys in ``ignored_checkpoint_keys`` are skipped; any other missing or unexpected
        key is an error. Returns the checkpoints' extras (also kept in
        ``self.loaded_extras``).
        """
        names = self.get_model_names()
        if not names:
            print("Note that load_model() is skipped as no model is registered")
            return {}
        if not directory:
            raise FileNotFoundError(
                f"No checkpoint directory given, so {names} would keep freshly initialised weights. "
                "Pass --model-dir <training output dir> (it holds <name>/model.pth.tar-N) and --load-epoch N."
            )
        ignored = tuple(self.ignored_checkpoint_keys)
        extras: Dict[str, Any] = {}
        for name in names:
            fpath = self.checkpoint_path(directory, name, epoch)
            checkpoint = read_model_checkpoint(fpath)
            self.before_load_state_dict(name, {k: v for k, v in checkpoint.items() if k not in RESERVED_KEYS})
            ignored = tuple(self.ignored_checkpoint_keys)  # the hook may have extended them
            state_dict = self.translate_checkpoint(name, dict(checkpoint["state_dict"]))
            state_dict = {k: v for k, v in state_dict.items() if not _is_ignored(k, ignored)}
            msg = f'Loading weights to {name} from "{fpath}" (epoch = {checkpoint.get("epoch")})'
            if checkpoint.get("val_result") is not None:
                msg += f" (val_result = {checkpoint['val_result']:.2f})"
            print(msg)
            result = self._models[name].load_state_dict(state_dict, strict=False)
            missing = [k for k in result.missing_keys if not _is_ignored(k, ignored)]
            if missing or result.unexpected_keys:
                raise RuntimeError(
                    f'Checkpoint "{fpath}" does not fit model "{name}": missing keys {missing}, '
                    f"unexpected keys {list(result.unexpected_keys)}"
                )
            extras.update({k: v for k, v in checkpoint.items() if k not in RESERVED_KEYS})
        self.loaded_extras = extras
        return extras

    # ------------------------------------------------------------- model state
    def set_model_mode(self, mode: str = "train", names=None) -> None:
        if mode not in ("train", "eval", "test"):
            raise ValueError(f'set_model_mode() expects "train", "eval" or "test", got "{mode}"')
        for name in self.get_model_names(names):
            if mode == "train":
                self._models[name].train()
            else:
                self._models[name].eval()

    def update_lr(self, names=None) -> None:
        for name in self.get_model_names(names):
            if self._scheds[name] is not None:
                self._scheds[name].step()
        self._lr_stepped_epoch = getattr(self, "epoch", None)

    def detect_anomaly(self, loss: torch.Tensor) -> None:
        if not torch.isfinite(loss).all():
            raise FloatingPointError("Loss is infinite or NaN!")

    def get_current_lr(self, names=None) -> float:
        name = self.get_model_names(names)[0]
        optim = self._optims[name]
        if optim is None:
            raise RuntimeError(f'Model "{name}" has no optimizer registered')
        return optim.param_groups[0]["lr"]

    # ------------------------------------------------------------- tensorboard
    def init_writer(self, log_dir: str) -> None:
        if self._writer is not None:
            return
        try:  # tensorboard is optional
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            return
        print(f"Initialize tensorboard (log_dir={log_dir})")
        self._writer = SummaryWriter(log_dir=log_dir)

    def close_writer(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def write_scalar(self, tag: str, scalar_value: float, global_step: Optional[int] = None) -> None:
        if self._writer is not None:
            self._writer.add_scalar(tag, scalar_value, global_step)

    # --------------------------------------------------------------- lifecycle
    @measured("training")
    def train(self, start_epoch: int, max_epoch: int) -> None:
        self.start_epoch = start_epoch
        self.max_epoch = max_epoch
        self.before_train()
        for self.epoch in range(self.start_epoch, self.max_epoch):
            self.set_data_epoch(self.epoch)
            self.before_epoch()
            self.run_epoch()
            self.after_epoch()
        self.after_train()

    def before_train(self) -> None:
        pass

    def after_train(self) -> None:
        pass

    def set_data_epoch(self, epoch: int) -> None:
        """Tell the training data which epoch starts (its augmentations depend on it)."""

    def data_pass(self, loader) -> ContextManager:
        """The context of one pass over ``loader`` (a training epoch, an evaluation): a trainer
        may prepare what the pass reads and clean up after it. Nothing by default."""
        return contextlib.nullcontext()

    def loader_pass(self, loader) -> LoaderPass:
        """Iterate ``loader`` once inside ``data_pass(loader)``."""
        return LoaderPass(loader, self.data_pass)

    def before_epoch(self) -> None:
        pass

    def after_epoch(self) -> None:
        pass

    def run_epoch(self) -> None:
        raise NotImplementedError

    def before_test(self) -> None:
        """Called by ``test()`` before the evaluation loop (e.g. cache text features)."""

    def after_test(self) -> None:
        """Called by ``test()`` after the evaluation loop, even if it failed."""

    def test(self, split: Optional[str] = None) -> float:
        raise NotImplementedError

    def parse_batch_train(self, batch):
        raise NotImplementedError

    def parse_batch_test(self, batch):
        raise NotImplementedError

    def forward_backward(self, batch) -> Dict[str, float]:
        raise NotImplementedError

    def model_inference(self, input):
        raise NotImplementedError

    # ------------------------------------------------------------ optimisation
    def model_zero_grad(self, names=None) -> None:
        for name in self.get_model_names(names):
            if self._optims[name] is not None:
                self._optims[name].zero_grad()

    def model_backward(self, loss: torch.Tensor) -> None:
        """Backpropagate ``loss`` (scaled by ``self.scaler`` when set)."""
        self.detect_anomaly(loss)
        if self.scaler is None:
            loss.backward()
        else:
            self.scaler.scale(loss).backward()

    def unscale_gradients(self, names=None) -> None:
        """Divide the gradients by the loss scale (a no-op without ``self.scaler``)."""
        if self.scaler is None:
            return
        for name in self.get_model_names(names):
            if self._optims[name] is not None:
                self.scaler.unscale_(self._optims[name])

    def after_backward(self) -> None:
        """Hook between backward and the optimizer step; the gradients are already
        unscaled. The place for gradient surgery (e.g. ProGrad's projection) or clipping."""

    def model_update(self, names=None) -> None:
        optims = [self._optims[name] for name in self.get_model_names(names) if self._optims[name] is not None]
        if self.scaler is None:
            for optim in optims:
                optim.step()
            return
        # One loss, one decision: the scaler would skip only the optimizers whose own gradients
        # overflowed, so with several (per-module learning rates) one module could move while
        # another is skipped. Any non-finite gradient skips every step; the update lowers the scale.
        finite = all(torch.isfinite(p.grad).all() for optim in optims for group in optim.param_groups
                     for p in group["params"] if p.grad is not None)
        if finite:
            for optim in optims:
                self.scaler.step(optim)
        self.scaler.update()

    def model_backward_and_update(self, loss: torch.Tensor, names=None) -> None:
        """One optimisation step: zero the gradients, backward, ``after_backward()``, step."""
        self.model_zero_grad(names)
        self.model_backward(loss)
        self.unscale_gradients(names)
        self.after_backward()
        self.model_update(names)


class SimpleTrainer(TrainerBase):
    """A trainer over one ``DataManager``: subclasses implement ``build_model``."""

    def __init__(self, cfg) -> None:
        super().__init__()
        # The config as given, before check_cfg resolves aliases and defaults in place: what a
        # run folder's record was written from (train.py), so what resuming compares with it.
        self.cfg_as_given = cfg.clone()
        self.check_cfg(cfg)
        self.device = torch.device("cuda" if torch.cuda.is_available() and cfg.USE_CUDA else "cpu")
        self.start_epoch = self.epoch = 0
        self.max_epoch = cfg.OPTIM.MAX_EPOCH
        self.output_dir = cfg.OUTPUT_DIR
        self.cfg = cfg
        self.build_data_loader()
        self.build_model()
        self.evaluator = build_evaluator(cfg, lab2cname=self.lab2cname)
        self.best_result = -np.inf

    def check_cfg(self, cfg) -> None:
        """Hook: validate the config before anything is built."""

    def build_data_loader(self) -> None:
        dm = DataManager(self.cfg)
        self.train_loader_x = dm.train_loader_x
        self.train_loader_u = dm.train_loader_u
        self.val_loader = dm.val_loader
        self.test_loader = dm.test_loader
        self.num_classes = dm.num_classes
        self.num_source_domains = dm.num_source_domains
        self.lab2cname = dm.lab2cname
        self.dm = dm

    def set_data_epoch(self, epoch: int) -> None:
        for loader in (self.train_loader_x, self.train_loader_u):
            set_epoch = getattr(getattr(loader, "dataset", None), "set_epoch", None)
            if set_epoch is not None:
                set_epoch(epoch)

    def build_model(self) -> None:
        raise NotImplementedError(
            f"{type(self).__name__} must implement build_model(): build self.model and "
            "register its trainable part with self.register_model(name, module, optim, sched)"
        )

    def train(self) -> None:  # type: ignore[override]
        super().train(self.start_epoch, self.max_epoch)

    def before_train(self) -> None:
        directory = self.cfg.RESUME or self.output_dir
        check_resumable(directory, self.cfg_as_given)
        self.start_epoch = self.resume_model_if_exist(directory)
        # What a killed run left: temporaries of checkpoint writes, and epoch files older than
        # the fallback (a kill between saving an epoch and dropping the one before).
        self.remove_stale_checkpoints(keep_from=max(self.start_epoch - 1, 1))
        if self.start_epoch >= self.max_epoch:
            print(f"Training already finished ({self.start_epoch}/{self.max_epoch} epochs); nothing to train")
        self.init_writer(osp.join(self.output_dir, "tensorboard"))
        self.time_start = time.time()

    def after_train(self) -> None:
        # Training is over: the fallback for resuming (and anything older) is no longer needed.
        self.remove_stale_checkpoints(keep_from=self.max_epoch)
        print("Finish training")
        if not self.cfg.TEST.NO_TEST:
            if self.cfg.TEST.FINAL_MODEL == "best_val":
                print("Deploy the model with the best val performance")
                self.load_model(self.output_dir)
            else:
                print("Deploy the last-epoch model")
            self.test()
        elapsed = str(datetime.timedelta(seconds=round(time.time() - self.time_start)))
        print(f"Elapsed: {elapsed}")
        self.close_writer()

    def _keeps_checkpoint(self, epoch_number: int) -> bool:
        """Whether the 1-based ``epoch_number`` file stays once training has finished."""
        freq = self.cfg.TRAIN.CHECKPOINT_FREQ
        return freq > 0 and epoch_number % freq == 0

    def remove_stale_checkpoints(self, keep_from: int) -> None:
        """Remove, in this run's model folders, the epoch files before ``keep_from`` (1-based)
        that ``TRAIN.CHECKPOINT_FREQ`` does not keep, and the temporary files of checkpoint
        writes that were cut short (never those of a live process)."""
        for name in self.get_model_names():
            model_dir = osp.join(self.output_dir, name)
            for path in remove_temporaries(model_dir):
                print(f"Removed the temporary file {path} of an interrupted checkpoint write")
            for epoch_number in sorted(_epoch_files(model_dir)):
                if epoch_number < keep_from:
                    self._drop_epoch_checkpoint(epoch_number, names=[name])

    def _drop_epoch_checkpoint(self, epoch_number: int, names: Optional[Sequence[str]] = None) -> None:
        if epoch_number < 1 or self._keeps_checkpoint(epoch_number):
            return
        for name in names if names is not None else self.get_model_names():
            fpath = osp.join(self.output_dir, name, f"model.pth.tar-{epoch_number}")
            if osp.isfile(fpath):
                os.remove(fpath)

    def after_epoch(self) -> None:
        if not self.cfg.TEST.NO_TEST and self.cfg.TEST.FINAL_MODEL == "best_val":
            curr_result = self.test(split="val")
            if curr_result > self.best_result:
                self.best_result = curr_result
                self.save_model(self.epoch, self.output_dir, val_result=curr_result, model_name=BEST_NAME)
        # Saved every epoch so an interrupted run resumes exactly. The file of the epoch
        # before stays as a fallback should this one prove unreadable; older ones go
        # unless CHECKPOINT_FREQ keeps them.
        try:
            self.save_model(self.epoch, self.output_dir)
        except DiskFullError as err:
            resume = (f"resumes from epoch {self.epoch}, whose checkpoint is intact" if self.epoch
                      else "starts training again")
            raise DiskFullError(err.errno, f"{err.strerror} Training stopped at the end of epoch "
                                           f"{self.epoch + 1}; running the same command again {resume}.") from err
        self._drop_epoch_checkpoint(self.epoch - 1)

    @torch.no_grad()
    @measured("evaluation")
    def test(self, split: Optional[str] = None) -> float:
        """Evaluate on ``split`` (default ``TEST.SPLIT``); return the first metric (accuracy)."""
        self.set_model_mode("eval")
        self.evaluator.reset()
        if split is None:
            split = self.cfg.TEST.SPLIT
        if split == "val" and self.val_loader is not None:
            data_loader = self.val_loader
        else:
            split = "test"  # no val set (e.g. test-only datasets): use test
            data_loader = self.test_loader
        print(f"Evaluate on the *{split}* set")
        self.before_test()
        try:
            for batch in tqdm(self.loader_pass(data_loader)):
                output, label = self.evaluate_batch(batch)
                self.cost.count_images("evaluation", len(label))
                self.evaluator.process(output, label)
        finally:
            self.after_test()
        results = self.evaluator.evaluate()
        for k, v in results.items():
            self.write_scalar(f"{split}/{k}", v, self.epoch)
        return list(results.values())[0]

    def evaluate_batch(self, batch) -> Tuple[Any, Any]:
        """One evaluation step: ``(output, label)`` of a test batch. Upstream's step
        (``parse_batch_test``, then ``model_inference`` on the input); a trainer whose
        inference needs more of the batch overrides it and passes that on explicitly."""
        input, label = self.parse_batch_test(batch)
        return self.model_inference(input), label

    def model_inference(self, input):
        return self.model(input)

    def parse_batch_test(self, batch):
        return batch["img"].to(self.device), batch["label"].to(self.device)


class TrainerX(SimpleTrainer):
    """Trains on labelled data only (``train_loader_x``)."""

    def run_epoch(self) -> None:
        if self.train_loader_x is None:
            raise RuntimeError(
                f"Dataset {self.cfg.DATASET.NAME} is test-only (no training split): "
                "evaluate it with --eval-only --model-dir DIR"
            )
        self.set_model_mode("train")
        # Also here, not only in train(): code that drives the epochs itself calls run_epoch.
        self.set_data_epoch(self.epoch)
        losses = MetricMeter()
        batch_time = AverageMeter()
        data_time = AverageMeter()
        self.num_batches = len(self.train_loader_x)
        print_freq = self.cfg.TRAIN.PRINT_FREQ
        end = time.time()
        for self.batch_idx, batch in enumerate(self.loader_pass(self.train_loader_x)):
            data_time.update(time.time() - end)
            self.cost.count_images("training", batch_size(batch))
            loss_summary = self.forward_backward(batch)
            batch_time.update(time.time() - end)
            losses.update(loss_summary)

            if (self.batch_idx + 1) % print_freq == 0 or self.num_batches < print_freq:
                remaining = self.num_batches - self.batch_idx - 1
                remaining += (self.max_epoch - self.epoch - 1) * self.num_batches
                eta = str(datetime.timedelta(seconds=int(batch_time.avg * remaining)))
                print(
                    f"epoch [{self.epoch + 1}/{self.max_epoch}] "
                    f"batch [{self.batch_idx + 1}/{self.num_batches}] "
                    f"time {batch_time.val:.3f} ({batch_time.avg:.3f}) "
                    f"data {data_time.val:.3f} ({data_time.avg:.3f}) "
                    f"{losses} "
                    f"lr {self.get_current_lr():.4e} "
                    f"eta {eta}"
                )

            n_iter = self.epoch * self.num_batches + self.batch_idx
            for name, meter in losses.meters.items():
                self.write_scalar("train/" + name, meter.avg, n_iter)
            self.write_scalar("train/lr", self.get_current_lr(), n_iter)
            end = time.time()
        # The schedules step once per epoch, after its last batch (as upstream), unless
        # an upstream-style forward_backward already did.
        if self._lr_stepped_epoch != self.epoch:
            self.update_lr()

    def parse_batch_train(self, batch):
        return (
            batch["img"].to(self.device),
            batch["label"].to(self.device),
            batch["domain"].to(self.device),
        )
