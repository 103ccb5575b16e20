"""ProGrad (Zhu et al., ICCV 2023, "Prompt-aligned Gradient for Prompt Tuning").

CoOp, whose update is kept from contradicting zero-shot CLIP. Upstream: BeierZhu/Prompt-align
``ProGrad.public/trainers/prograd.py`` and the ``prograd_backward_and_update`` of its Dassl
fork (``Dassl.ProGrad.pytorch/dassl/engine/trainer.py``).

* Model: CoOp's prompt learner (``N_CTX`` 16). ``CTX_INIT True`` is upstream's init: the
  words of the dataset's template (``PROGRAD_TEMPLATES`` with " {}." removed) fill the last
  ``#words`` context vectors, the ones before them start at zero, and the prompt reads
  "X ... X <template words> <class>."; ``#words`` counts words, not BPE tokens, so with a
  comma in the template its last token stays frozen text after the context.
* Teacher: zero-shot CLIP, ``z_t = exp(logit_scale) <f(x), T_c>`` with ``T_c`` the fixed
  normalised features of the template filled with class ``c``, computed once per class set
  with the CLIP already loaded, on the same augmented batch.
* Step: ``L_ce = CE(z_s, y)`` is the objective; ``L_kd = T^2 mean_b sum_c -softmax(z_t/T)_c
  log softmax(z_s/T)_c`` only steers it. Per trainable tensor, if ``cos(g_ce, g_kd) < 0``
  the gradient becomes ``g_ce - lambda (g_ce . u) u`` with ``u = g_kd / |g_kd|``, else
  ``g_ce``; the optimizer (weight decay included) then steps as usual. ``g_kd`` is taken in
  ``compute_loss`` (scaled under amp, then unscaled) and the projection is applied in the
  engine's ``after_backward`` hook, where ``g_ce`` is final and unscaled.

Config: ``TRAINER.PROGRAD.{N_CTX, CTX_INIT, CSC, CLASS_TOKEN_POSITION, PREC, LAMBDA, T}``.
The spellings of upstream scripts and YAMLs are aliases (``CONFIG_ALIASES``): ``TRAINER.COOP.{N_CTX,
CSC, CLASS_TOKEN_POSITION, PREC}`` and ``LOSS.{LAMBDA, T}``, when set, are written into the node;
``LOSS.NAME`` may be "" or "prograd".
Differences from upstream (docs/upstream-differences.md, "ProGrad"): no division by a zero
gradient norm, amp works, the teacher shares the student's CLIP and image features.
"""
from __future__ import annotations

from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from dassl.config import CfgNode
from dassl.engine import TRAINER_REGISTRY
from dassl.metrics import compute_accuracy

from .common.model import PromptCLIP
from .common.prompt_learner import PromptLearner
from .common.templates import CUSTOM_TEMPLATES, template_for
from .common.text_encoder import TextEncoder, tokenize
from .common.text_spec import text_spec
from .common.trainer import LossOutput, PromptTrainer
from .config import prompt_config_node, register_config

# ProGrad's own template table (``CUSTOM_TEMPLATES`` in ProGrad.public/trainers/prograd.py):
# CoOp's, except that five datasets put the category phrase first. Its teacher and its
# template init both read it.
PROGRAD_TEMPLATES: Dict[str, str] = {
    **CUSTOM_TEMPLATES,
    "OxfordPets": "a type of pet, a photo of a {}.",
    "OxfordFlowers": "a type of flower, a photo of a {}.",
    "FGVCAircraft": "a type of aircraft, a photo of a {}.",
    "DescribableTextures": "a texture of {}.",
    "Food101": "a type of food, a photo of {}.",
}

# Keys that upstream scripts pass as TRAINER.COOP.<key> or LOSS.<key>: ProGrad's aliases.
COOP_SPELLINGS = ("N_CTX", "CSC", "CLASS_TOKEN_POSITION", "PREC")
LOSS_SPELLINGS = ("LAMBDA", "T")
CONFIG_ALIASES: Dict[str, str] = {
    **{key: f"TRAINER.COOP.{key}" for key in COOP_SPELLINGS},
    **{key: f"LOSS.{key}" for key in LOSS_SPELLINGS},
}
LOSS_NAME = "prograd"


@register_config
def prograd_config(cfg) -> None:
    cfg.TRAINER.PROGRAD = prompt_config_node(n_ctx=16, ctx_init="", prec="fp16")
    # True: upstream's template init; False or "": random; words: CoOp's init from them.
    # Unset (None) means True, as in every upstream config. yacs merges a value of any type
    # into a None, so the shipped configs leave it unset and either spelling works on the
    # command line (once a YAML sets it, its type is fixed, as for any key).
    cfg.TRAINER.PROGRAD.CTX_INIT = None
    cfg.TRAINER.PROGRAD.LAMBDA = 1.0  # weight of the projection (1: remove the whole conflicting component)
    cfg.TRAINER.PROGRAD.T = 1.0  # distillation temperature
    # Upstream ProGrad's spellings (its train.py adds a LOSS node); unset here, and when set
    # they override TRAINER.PROGRAD.LAMBDA / T.
    if "LOSS" not in cfg:
        cfg.LOSS = CfgNode()
    cfg.LOSS.NAME = ""  # upstream requires "prograd"; "" (unset) means the same here
    cfg.LOSS.LAMBDA = None
    cfg.LOSS.T = None


def check_settings(cfg, sources: Mapping[str, str]) -> None:
    """Validate ``TRAINER.PROGRAD`` (aliases already resolved into it), in place: its numbers
    become floats and an unset ``CTX_INIT`` becomes True (upstream's template init). ``sources`` names the key each value came from (``resolve_config_aliases``); a
    ``ValueError`` names it for a value ProGrad cannot use."""
    node = cfg.TRAINER.PROGRAD
    sources = {**{key: f"TRAINER.PROGRAD.{key}" for key in node}, **sources}
    loss = cfg.get("LOSS", CfgNode())
    name = str(loss.get("NAME", "") or "")
    if name and name.lower() != LOSS_NAME:
        raise ValueError(
            f'LOSS.NAME="{name}": ProGrad implements only its own loss, "{LOSS_NAME}" (upstream\'s name); '
            f'write LOSS.NAME "{LOSS_NAME}" or leave it unset'
        )
    if node.CTX_INIT is not None and not isinstance(node.CTX_INIT, (bool, str)):
        raise ValueError(
            f"{sources['CTX_INIT']}={node.CTX_INIT!r}: write True (upstream ProGrad's init from the dataset "
            'template), False or "" (random init), or the initialisation words, e.g. "a photo of a"'
        )
    for key in LOSS_SPELLINGS:
        if isinstance(node[key], bool) or not isinstance(node[key], (int, float)):
            raise ValueError(f"{sources[key]}={node[key]!r}: expected a number, e.g. 1.0")
    if node.T <= 0:
        raise ValueError(f"{sources['T']}={node.T}: the distillation temperature must be > 0")
    frozen = cfg.is_frozen()
    cfg.defrost()
    if node.CTX_INIT is None:
        node.CTX_INIT = True  # unset: upstream's template init
    for key in LOSS_SPELLINGS:
        node[key] = float(node[key])
    if frozen:
        cfg.freeze()


def template_words(template: str) -> str:
    """The words of a ``"... {}."`` template without the class slot (upstream's template init)."""
    if " {}." not in template:
        raise ValueError(
            f'CTX_INIT True initialises the context from the dataset template, which must contain " {{}}."; '
            f'got "{template}". Add the dataset to PROGRAD_TEMPLATES (trainers/prograd.py) or set '
            "TRAINER.PROGRAD.CTX_INIT to words"
        )
    return template.replace(" {}.", "").replace("_", " ")


class ProGradPromptLearner(PromptLearner):
    """CoOp's learner; with ``right_align`` the ``ctx_init`` words are placed as upstream ProGrad's
    template init: after ``N_CTX - #words`` zero vectors, ``#words`` counted by whitespace."""

    def __init__(self, classnames: Sequence[str], clip_model: nn.Module, right_align: bool = False, **kwargs) -> None:
        # Read by initial_context, which PromptLearner.__init__ calls (a plain attribute may
        # be set before nn.Module.__init__).
        self.right_align = bool(right_align)
        super().__init__(classnames, clip_model, **kwargs)

    def initial_context(
        self, clip_model: nn.Module, n_ctx: int, ctx_init: str, n_cls: Optional[int], keep_n_ctx: bool
    ) -> Tuple[torch.Tensor, str]:
        if not (self.right_align and ctx_init):
            return super().initial_context(clip_model, n_ctx, ctx_init, n_cls, keep_n_ctx)
        n_words = len(ctx_init.split(" "))
        if n_ctx < n_words:
            raise ValueError(
                f'N_CTX={n_ctx} is shorter than the {n_words} words of the template init "{ctx_init}"; '
                f"set TRAINER.PROGRAD.N_CTX to at least {n_words}"
            )
        with torch.no_grad():
            embedding = clip_model.token_embedding(tokenize(ctx_init, clip_model)).to(clip_model.dtype)
        vectors = torch.zeros(n_ctx, embedding.shape[-1], dtype=clip_model.dtype)
        first = text_spec(clip_model).n_prefix  # after CLIP's SOS
        vectors[n_ctx - n_words:] = embedding[0, first:first + n_words]
        if n_cls is not None:
            vectors = vectors.unsqueeze(0).repeat(n_cls, 1, 1)
        return vectors, " ".join(["X"] * (n_ctx - n_words) + [ctx_init])


class ProGradCLIP(PromptCLIP):
    """``PromptCLIP`` + zero-shot CLIP as the teacher: fixed class features ``zs_text_features``."""

    def __init__(self, clip_model: nn.Module, prompt_learner: PromptLearner, zs_text_features: torch.Tensor) -> None:
        super().__init__(clip_model, prompt_learner)
        self.register_buffer("zs_text_features", zs_text_features.float(), persistent=False)

    @torch.no_grad()
    def teacher_logits(self, image_features: torch.Tensor) -> torch.Tensor:
        """Zero-shot logits of normalised image features. The student's image tower is the frozen
        CLIP one, so its features are the teacher's (upstream encodes the batch a second time)."""
        return self.logits(image_features.float(), self.zs_text_features)


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """``T^2 mean_b sum_c -softmax(z_t/T)_c log softmax(z_s/T)_c`` (upstream's ``ProGradLoss``; the
    soft-target cross-entropy: KL plus the teacher's entropy, the same gradient)."""
    t = temperature
    teacher_prob = F.softmax(teacher_logits / t, dim=-1)
    loss = -teacher_prob * F.log_softmax(student_logits.float() / t, dim=-1) * t * t
    return loss.sum(1).mean()


def project_conflicting_gradient(g_ce: torch.Tensor, g_kd: torch.Tensor, lambda_: float) -> torch.Tensor:
    """ProGrad's rule for one tensor: ``g_ce - lambda (g_ce . u) u`` with ``u = g_kd / |g_kd|``
    where ``cos(g_ce, g_kd) < 0``, else ``g_ce``.

    Computed in float32 (an fp16 norm underflows) and without a host sync. A zero or
    non-finite norm leaves ``g_ce`` as it is (upstream divides by it first: NaN); a
    non-finite ``g_ce`` under amp is left for the grad scaler, which skips the step.
    """
    a, b = g_ce.flatten().float(), g_kd.flatten().float()
    a_norm, b_norm = torch.linalg.norm(a), torch.linalg.norm(b)
    usable = (a_norm > 0) & (b_norm > 0) & torch.isfinite(a_norm) & torch.isfinite(b_norm)
    one = torch.ones_like(a_norm)
    b_unit = b / torch.where(usable, b_norm, one)
    cos = torch.dot(a / torch.where(usable, a_norm, one), b_unit)
    projected = a - lambda_ * torch.dot(a, b_unit) * b_unit
    return torch.where(usable & (cos < 0), projected, a).view_as(g_ce).to(g_ce.dtype)


@TRAINER_REGISTRY.register()
class ProGrad(PromptTrainer):
    CFG_NODE = "PROGRAD"
    PROMPT_LEARNER = ProGradPromptLearner
    CONFIG_ALIASES = CONFIG_ALIASES

    # -- config ---------------------------------------------------------------
    def check_cfg(self, cfg) -> None:
        super().check_cfg(cfg)
        self.setting_sources = {key: self.config_sources.get(key, f"TRAINER.PROGRAD.{key}") for key in cfg.TRAINER.PROGRAD}
        if cfg.TRAINER.PROGRAD.CTX_INIT is None:
            self.setting_sources["CTX_INIT"] = "TRAINER.PROGRAD.CTX_INIT unset: upstream's template init"
        check_settings(cfg, self.config_sources)

    # -- model ----------------------------------------------------------------
    def build_custom_model(self, cfg, classnames: Sequence[str], clip_model: nn.Module) -> nn.Module:
        node, sources = self.method_cfg, self.setting_sources
        print("ProGrad settings: " + ", ".join(f"{key} = {node[key]!r} ({sources[key]})" for key in node))
        template = template_for(cfg.DATASET.NAME, PROGRAD_TEMPLATES)
        if node.CTX_INIT is True:
            init = dict(ctx_init=template_words(template), right_align=True)
        else:
            init = dict(ctx_init=node.CTX_INIT or "")
        learner = self.build_prompt_learner(classnames, clip_model, **init)
        print(f'Zero-shot teacher template: "{template}"')
        zs_features = self.hand_crafted_features(TextEncoder(clip_model), classnames, [template])
        self._kd_grads: Dict[nn.Parameter, torch.Tensor] = {}
        return ProGradCLIP(clip_model, learner, zs_features)

    # -- training -------------------------------------------------------------
    def trainable_parameters(self) -> List[nn.Parameter]:
        return [p for module in self.trainable_modules().values() for p in module.parameters() if p.requires_grad]

    def compute_loss(self, image: torch.Tensor, label: torch.Tensor) -> LossOutput:
        image_features = self.model.encode_image(image)
        logits = self.model.logits(image_features, self.model.text_features())
        loss_ce = F.cross_entropy(logits, label)
        loss_kd = distillation_loss(logits, self.model.teacher_logits(image_features), self.method_cfg.T)
        self._kd_grads = self.distillation_gradients(loss_kd)
        return loss_ce, {"loss_kd": loss_kd, "acc": compute_accuracy(logits, label)[0]}

    def distillation_gradients(self, loss_kd: torch.Tensor) -> Dict[nn.Parameter, torch.Tensor]:
        """``d loss_kd / d p`` of every trainable tensor, unscaled. The graph is kept for the
        engine's backward of the objective. Under amp the loss is scaled first, as the
        objective is, so that fp16 activation gradients do not underflow."""
        self.detect_anomaly(loss_kd)
        params = self.trainable_parameters()
        scaled = self.scaler.scale(loss_kd) if self.scaler is not None else loss_kd
        grads = torch.autograd.grad(scaled, params, retain_graph=True, allow_unused=True)
        inv_scale = 1.0 / self.scaler.get_scale() if self.scaler is not None else None
        return {
            p: (g if inv_scale is None else g * inv_scale)
            for p, g in zip(params, grads)
            if g is not None
        }

    def after_backward(self) -> None:
        kd_grads, self._kd_grads = self._kd_grads, {}
        for p, g_kd in kd_grads.items():
            if p.grad is not None:
                p.grad = project_conflicting_gradient(p.grad, g_kd, self.method_cfg.LAMBDA)
        super().after_backward()


__all__ = [
    "PROGRAD_TEMPLATES",
    "ProGrad",
    "ProGradCLIP",
    "ProGradPromptLearner",
    "distillation_loss",
    "project_conflicting_gradient",
    "check_settings",
    "prograd_config",
    "template_words",
]
