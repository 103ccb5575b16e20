"""``PromptTrainer``: what every CoOp-family trainer repeats, written once.

A method subclasses it, names its config node and builds its model::

    @TRAINER_REGISTRY.register()
    class MyMethod(PromptTrainer):
        CFG_NODE = "MYMETHOD"                      # reads cfg.TRAINER.MYMETHOD.*
        def build_custom_model(self, cfg, classnames, clip_model):
            return PromptCLIP(clip_model, self.build_prompt_learner(classnames, clip_model))

The base then: loads CLIP once at the right precision; freezes everything but
``trainable_modules()`` (default: ``model.prompt_learner``); builds one
optimizer/scheduler per trainable module and registers it; runs the training step
under autocast (``compute_loss`` is the per-method hook: default cross-entropy on
``model(image)``; it may return named losses, which are summed and logged one by one),
and leaves backward, the grad scaler, the ``after_backward`` hook, the optimizer step
and the learning-rate schedule to the engine; computes the class text features once per
evaluation (``before_test``) instead of once per test batch; lets a method with nothing
to train (``trainable_modules()`` empty) skip the epochs and only evaluate; and loads checkpoints
without the class-name-dependent buffers (``ignored_checkpoint_keys``; any other missing
or unexpected key is an error), after ``translate_checkpoint`` has mapped the key names
of another code base (upstream model zoos) onto this one's.

When the image encoder is frozen, its features come from the exact, shared image-feature
cache (docs/feature-cache.md) without the method doing anything. Batches carry their
items' identities (``dassl.data.ImageBatch``: ``parse_batch_*`` hands ``compute_loss`` /
``model_inference`` the batch's images as an ``ImageBatch``), and whatever the method
passes them to (``model.encode_image``, ``model(...)``, the image encoder) serves their
features by those identities. Each pass over a loader first makes sure the features of
all its items are computed (or read from the cache), then reads no image: the batch's
``img`` is then itself an ``ImageBatch`` naming the items, so a ``parse_batch_*`` written
as upstream's (``batch["img"].to(self.device)``) passes it on too. Each run logs one line
with the cache's hits and misses (``self.feature_server.stats()`` gives them as numbers).
"""
from __future__ import annotations

import contextlib
import time
from typing import Any, ClassVar, Dict, Iterator, Mapping, Optional, Sequence, Tuple, Type, Union

import torch
import torch.nn.functional as F
from torch import nn

from dassl.data.batch import ImageBatch
from dassl.engine import TrainerX
from dassl.features import ImageFeatureServer
from dassl.metrics import compute_accuracy
from dassl.optim import build_lr_scheduler, build_optimizer
from dassl.utils import load_pretrained_weights

from ..config import resolve_config_aliases
from .cache_identity import backbone_key
from .clip_loader import backbone_identity, load_clip_to_cpu
from .feature_cache import attach_feature_server
from .model import Images, PromptCLIP
from .precision import PRECISIONS, Precision, resolve_precision
from .prompt_learner import PromptLearner
from .text_encoder import TextEncoder, class_text_features

# State-dict keys that depend on the class names: never loaded from a checkpoint
# (upstream CoOp/CoCoOp/KgCoOp/MaPLe checkpoints still carry them).
CLASS_DEPENDENT_KEYS = ("token_prefix", "token_suffix", "token_midfix")

#: What ``compute_loss`` returns: a loss tensor; a dict of named loss tensors (summed);
#: or a pair ``(loss or dict of losses, {name: number to log})`` (metrics are logged,
#: never optimised).
LossOutput = Union[
    torch.Tensor,
    Mapping[str, torch.Tensor],
    Tuple[Union[torch.Tensor, Mapping[str, torch.Tensor]], Mapping[str, Any]],
]


def _as_number(value: Any) -> float:
    return value.item() if isinstance(value, torch.Tensor) else float(value)


def split_loss_output(output: LossOutput) -> Tuple[torch.Tensor, Dict[str, float]]:
    """The total loss to optimise and the numbers to log: ``loss`` (the total), each named
    loss when there are several, then the metrics."""
    metrics: Mapping[str, Any] = {}
    if isinstance(output, tuple):
        output, metrics = output
    if isinstance(output, torch.Tensor):
        losses = {"loss": output}
    elif isinstance(output, Mapping) and output:
        losses = dict(output)
    else:
        raise TypeError(
            "compute_loss must return a loss tensor, a non-empty dict of named loss tensors, "
            f"or (losses, metrics); got {type(output).__name__}"
        )
    total = sum(losses.values())
    summary = {"loss": total.item()}
    if len(losses) > 1:
        summary.update((name, value.item()) for name, value in losses.items())
    summary.update((name, _as_number(value)) for name, value in metrics.items() if name != "loss")
    return total, summary


class PromptTrainer(TrainerX):
    """Base of the CLIP prompt-learning trainers (see the module docstring)."""

    #: Which ``cfg.TRAINER.<node>`` holds PREC, N_CTX, ...; every trainer must name its own.
    CFG_NODE: ClassVar[Optional[str]] = None
    #: The prompt learner ``build_prompt_learner`` makes.
    PROMPT_LEARNER: ClassVar[Type[PromptLearner]] = PromptLearner
    #: Other spellings of the node's keys, ``{own key: full key}`` (e.g. upstream's
    #: ``{"N_CTX": "TRAINER.COOP.N_CTX", "LAMBDA": "LOSS.LAMBDA"}``), resolved into the node by
    #: ``check_cfg`` (``trainers.config.resolve_config_aliases``: an alias that is set wins,
    #: an alias and an own key set to different values are an error naming both).
    CONFIG_ALIASES: ClassVar[Mapping[str, str]] = {}
    ignored_checkpoint_keys = CLASS_DEPENDENT_KEYS  # rebuilt from the current class names

    # -- config ---------------------------------------------------------------
    @property
    def method_cfg(self):
        """``cfg.TRAINER.<CFG_NODE>`` (aliases already resolved into it)."""
        return self.cfg.TRAINER[self.CFG_NODE]

    def check_cfg(self, cfg) -> None:
        if not self.CFG_NODE:
            raise TypeError(
                f"{type(self).__name__} must set the class attribute CFG_NODE to the name of its config "
                f"node (e.g. CFG_NODE = \"{type(self).__name__.upper()}\" for cfg.TRAINER."
                f"{type(self).__name__.upper()}), declared with trainers.config.prompt_config_node"
            )
        node = cfg.TRAINER.get(self.CFG_NODE)
        if node is None:
            raise KeyError(
                f"{type(self).__name__} reads cfg.TRAINER.{self.CFG_NODE}, which is not defined; "
                "declare it in a @register_config function and build the config with "
                "trainers.config.extend_cfg(cfg)"
            )
        #: ``{own key: the full key its value came from}`` for the keys with aliases.
        self.config_sources = resolve_config_aliases(cfg, self.CFG_NODE, self.CONFIG_ALIASES)
        for key, source in self.config_sources.items():
            if source != f"TRAINER.{self.CFG_NODE}.{key}":
                value = cfg.TRAINER[self.CFG_NODE]
                for part in key.split("."):
                    value = value[part]
                print(f"{source} = {value!r} (upstream spelling) overrides TRAINER.{self.CFG_NODE}.{key}")
        if str(node.PREC).lower() not in PRECISIONS:
            source = self.config_sources.get("PREC", f"TRAINER.{self.CFG_NODE}.PREC")
            raise ValueError(f"{source}={node.PREC!r}; choose one of {list(PRECISIONS)}")

    # -- model ----------------------------------------------------------------
    def build_model(self) -> None:
        cfg = self.cfg
        classnames = self.dm.dataset.classnames
        self.precision: Precision = resolve_precision(
            self.method_cfg.PREC, self.device, on_cpu=cfg.MODEL.get("PREC_ON_CPU", False)
        )
        print(self.precision.describe())

        print(f"Loading CLIP (backbone: {cfg.MODEL.BACKBONE.NAME})")
        clip_model = self.precision.apply(load_clip_to_cpu(cfg))
        resolution = getattr(clip_model, "input_resolution", None) or clip_model.visual.input_resolution
        if tuple(cfg.INPUT.SIZE) != (resolution, resolution):
            raise ValueError(
                f"INPUT.SIZE={tuple(cfg.INPUT.SIZE)} but {cfg.MODEL.BACKBONE.NAME} takes "
                f"{resolution}x{resolution} images; set INPUT.SIZE ({resolution}, {resolution})"
            )
        expected = getattr(clip_model, "pixel_normalization", None)
        if expected is not None and (tuple(cfg.INPUT.PIXEL_MEAN), tuple(cfg.INPUT.PIXEL_STD)) != expected:
            print(f"Warning: INPUT.PIXEL_MEAN/STD = {tuple(cfg.INPUT.PIXEL_MEAN)} / {tuple(cfg.INPUT.PIXEL_STD)}, "
                  f"but {cfg.MODEL.BACKBONE.NAME} was trained with {expected[0]} / {expected[1]}")

        print(f"Building {type(self).__name__} on CLIP")
        self.model = self.build_custom_model(cfg, classnames, clip_model)
        if isinstance(self.model, PromptCLIP):
            self.model.activation_checkpointing = cfg.MODEL.get("ACT_CHECKPOINT", False)

        trainable = self.trainable_modules()
        self.model.requires_grad_(False)
        for module in trainable.values():
            module.requires_grad_(True)
        names = sorted(n for n, p in self.model.named_parameters() if p.requires_grad)
        print(f"Parameters to be updated: {names}")

        if cfg.MODEL.INIT_WEIGHTS:
            for module in trainable.values():
                load_pretrained_weights(module, cfg.MODEL.INIT_WEIGHTS)

        self.model.to(self.device)
        multipliers = dict(self.lr_multipliers())
        unknown = sorted(set(multipliers) - set(trainable))
        if unknown:
            raise KeyError(
                f"{type(self).__name__}.lr_multipliers() names {unknown}, which are not among "
                f"trainable_modules() {sorted(trainable)}"
            )
        for name, module in trainable.items():
            optim_cfg = cfg.OPTIM
            multiplier = float(multipliers.get(name, 1.0))
            if multiplier != 1.0:
                optim_cfg = cfg.OPTIM.clone()
                optim_cfg.defrost()
                optim_cfg.LR = cfg.OPTIM.LR * multiplier
            if multipliers:
                print(f"Learning rate of {name}: {optim_cfg.LR:g} (OPTIM.LR x {multiplier:g})")
            optim = build_optimizer(module, optim_cfg)
            sched = build_lr_scheduler(optim, optim_cfg)
            self.register_model(name, module, optim, sched)
        self.scaler = self.precision.grad_scaler()
        self._eval_text_features: Optional[torch.Tensor] = None

        backbone = backbone_key(
            cfg.MODEL.BACKBONE.NAME, backbone_identity(cfg.MODEL.BACKBONE.NAME, clip_model),
            clip_model.dtype,
        )
        self.feature_server: Optional[ImageFeatureServer]
        self.feature_server, self._no_feature_server_reason = attach_feature_server(
            self.model, cfg, self.precision, self.device, backbone
        )
        self._training_run = False

    def build_custom_model(self, cfg, classnames: Sequence[str], clip_model: nn.Module) -> nn.Module:
        """Return the method's model (a ``CLIPClassifier``); ``clip_model`` is already at precision."""
        raise NotImplementedError

    def build_prompt_learner(
        self,
        classnames: Sequence[str],
        clip_model: nn.Module,
        node=None,
        learner_class: Optional[Type[PromptLearner]] = None,
        **overrides,
    ) -> PromptLearner:
        """A ``PROMPT_LEARNER`` (or ``learner_class``) configured by ``N_CTX``/``CTX_INIT``/``CSC``/
        ``CLASS_TOKEN_POSITION`` of the method's node (or of ``node``, e.g. another method's)."""
        node = node if node is not None else self.method_cfg
        kwargs = dict(
            n_ctx=node.N_CTX,
            ctx_init=node.CTX_INIT,
            csc=node.get("CSC", False),
            class_token_position=node.get("CLASS_TOKEN_POSITION", "end"),
        )
        kwargs.update(overrides)
        return (learner_class or self.PROMPT_LEARNER)(classnames, clip_model, **kwargs)

    def trainable_modules(self) -> Dict[str, nn.Module]:
        """The modules that train, each registered (and checkpointed) under its key."""
        return {"prompt_learner": self.model.prompt_learner}

    def lr_multipliers(self) -> Dict[str, float]:
        """``{trainable module name: factor}``: that module trains at ``OPTIM.LR * factor`` (its own
        optimizer and schedule; the warmup's constant rate is not scaled). Default: all at 1."""
        return {}

    @property
    def image_encoder_is_frozen(self) -> bool:
        """Whether the image features depend on the image alone (cacheable): nothing this
        method learns reaches the image tower."""
        return bool(getattr(self.model, "image_features_are_fixed", False))

    @torch.no_grad()
    def hand_crafted_features(
        self, text_encoder: TextEncoder, classnames: Sequence[str], templates: Sequence[str]
    ) -> torch.Tensor:
        """Frozen normalised template features, computed on the trainer's device."""
        text_encoder.to(self.device)
        with self.precision.autocast():
            return class_text_features(text_encoder, classnames, templates)

    # -- frozen image features -------------------------------------------------
    @contextlib.contextmanager
    def data_pass(self, loader) -> Iterator[None]:
        """With a frozen image encoder, make sure the features of every item of the pass are
        in the server's table (read from the cache, or computed in index order), then let
        the pass read no image."""
        server, wrapper = self.feature_server, getattr(loader, "dataset", None)
        if server is None or not self.image_encoder_is_frozen or not getattr(wrapper, "describes_samples", False):
            yield
            return
        cfg = self.cfg.DATALOADER
        server.prefill(wrapper, num_workers=cfg.NUM_WORKERS,
                       loader_batch=max(cfg.TEST.BATCH_SIZE, cfg.TRAIN_X.BATCH_SIZE))
        wrapper.pixels_needed = False
        try:
            yield
        finally:
            wrapper.pixels_needed = True
            server.end_pass(wrapper.sample_group())

    def feature_cache_summary(self) -> str:
        if self.feature_server is None:
            return f"Image-feature cache not used: {self._no_feature_server_reason}"
        self.feature_server.flush_all()
        return self.feature_server.summary()

    # -- training -------------------------------------------------------------
    @property
    def trains_nothing(self) -> bool:
        """Whether no module is trainable (zero-shot and description classifiers)."""
        return not self.get_model_names()

    def train(self) -> None:
        """The engine's training loop; a method with nothing to train runs no epoch and
        goes straight to the end of training (``Finish training``, then the test), so
        ``train.py`` without ``--eval-only`` evaluates it as ``--eval-only`` would."""
        if not self.trains_nothing:
            super().train()
            return
        print(f"{type(self).__name__} has no trainable parameters: no epoch to run, the model is evaluated as it is")
        self.time_start = time.time()  # read by after_train, which before_train would have set
        self.after_train()

    def parse_batch_train(self, batch) -> Tuple[ImageBatch, torch.Tensor]:
        """The batch's images with their items' identities, and the labels, on the device."""
        return ImageBatch.from_batch(batch).to(self.device), batch["label"].to(self.device)

    def before_train(self) -> None:
        self._training_run = True
        super().before_train()

    def after_train(self) -> None:
        super().after_train()
        print(self.feature_cache_summary())

    def compute_loss(self, image: Images, label: torch.Tensor) -> LossOutput:
        """Loss of one batch (see :data:`LossOutput`); runs under autocast. ``image`` is what
        ``parse_batch_train`` gave (an ``ImageBatch``): hand it on as it is."""
        logits = self.model(image)
        loss = F.cross_entropy(logits, label)
        return loss, {"acc": compute_accuracy(logits, label)[0]}

    def forward_backward(self, batch) -> Dict[str, float]:
        image, label = self.parse_batch_train(batch)
        with self.precision.autocast():
            loss, summary = split_loss_output(self.compute_loss(image, label))
        if not self.trains_nothing:  # a classifier without trainable parameters has no step to take
            self.model_backward_and_update(loss)
        return summary

    # -- evaluation -----------------------------------------------------------
    @torch.no_grad()
    def compute_eval_text_features(self) -> Optional[torch.Tensor]:
        """Class text features shared by every test batch (None: they depend on the image)."""
        with self.precision.autocast():
            return self.model.text_features()

    def before_test(self) -> None:
        super().before_test()
        self._eval_text_features = self.compute_eval_text_features()

    def after_test(self) -> None:
        self._eval_text_features = None
        super().after_test()
        if not self._training_run:  # a training run logs its line once, after training
            print(self.feature_cache_summary())

    def parse_batch_test(self, batch) -> Tuple[ImageBatch, torch.Tensor]:
        """The batch's images with their items' identities, and the labels, on the device."""
        return ImageBatch.from_batch(batch).to(self.device), batch["label"].to(self.device)

    def model_inference(self, image: Images) -> torch.Tensor:
        with self.precision.autocast():
            return self.model(image, text_features=self._eval_text_features)

    # -- checkpoints ----------------------------------------------------------
    def load_model(self, directory: str, epoch: Optional[int] = None) -> Dict:
        """The engine's loader (class-name-dependent buffers skipped, ``strict=False`` otherwise
        checked), with the reason spelled out when a class-specific context meets another class set."""
        try:
            return super().load_model(directory, epoch)
        except RuntimeError as err:
            if "size mismatch" in str(err) and "ctx" in str(err) and self.method_cfg.get("CSC", False):
                raise RuntimeError(
                    f"{err}\nA class-specific context (CSC True) is trained for one class set and cannot "
                    "be loaded for a different one (e.g. the new classes); train with CSC False to transfer."
                ) from err
            raise


__all__ = ["CLASS_DEPENDENT_KEYS", "LossOutput", "PromptTrainer", "split_loss_output"]
