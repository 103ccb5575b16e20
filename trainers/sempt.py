"""SemPT (Shi, Ou, Chen, arXiv 2508.10645): semantic prompt tuning with shared attributes.

What the abstract states and what is our reading: the README's "Method" section.
In short, with ``f`` the image embedding,
``t_c`` the CoOp label embedding and ``e_ck`` the frozen embedding of class ``c``'s
description along shared attribute ``k``:

    alpha_ck(x) = softmax_k(<f, e_ck> / T_w)          visually guided weighting
    g_c(x)      = normalize(t_c + beta * sum_k alpha_ck(x) e_ck)
    L           = CE(tau <f, t>, y) + lambda CE(tau <f, g(x)>, y) [+ W L_kg]

At test time each class uses ``t_c`` if the prompt was trained on it (the class
names are stored in the checkpoint) and ``g_c(x)`` otherwise, in one softmax.

Composed of parts (``trainers/parts/``): the attribute knowledge (``attributes``,
``description_bank``, ``fusion``), the label branch's prompts (CoOp's learner, or
``coupled_prompts`` / ``vl_prompts`` + ``self_regulation`` with their keys in
``TRAINER.SEMPT.MAPLE`` / ``TRAINER.SEMPT.PROMPTSRC``) and ``knowledge_guidance``.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from dassl.engine import TRAINER_REGISTRY
from dassl.metrics import compute_accuracy

from .common.model import Images, PromptCLIP
from .common.prompt_learner import PromptLearner
from .common.templates import CUSTOM_TEMPLATES_KG, template_for
from .common.text_encoder import TextEncoder
from .common.trainer import LossOutput, PromptTrainer
from .config import prompt_config_node, register_config
from .parts.attributes import find_attribute_file, load_attribute_file, match_classes, normalize_classname
from .parts.coupled_prompts import MultiModalPromptLearner, coupled_prompt_config_node
from .parts.description_bank import (
    SentenceEmbeddingCache,
    encode_descriptions,
    flatten_descriptions,
    pool_descriptions,
)
from .parts.fusion import FUSIONS, WEIGHTINGS, attribute_logits, description_gram, select_by_exposure
from .parts.knowledge_guidance import knowledge_guidance_loss
from .parts.self_regulation import (
    GaussianPromptAggregation,
    GPATrainerMixin,
    SelfRegulation,
    announce_gpa,
    self_regulated_prompt_config_node,
)
from .parts.vl_prompts import build_vl_prompt_learner

INFERENCE_MODES = ("auto", "label", "attribute", "ensemble")
DESC_ENCODERS = ("frozen", "prompted")
# The label branch's prompts: CoOp's (the default; the node's own N_CTX, CTX_INIT, ...), MaPLe's
# coupled prompts (TRAINER.SEMPT.MAPLE) or IVLP's prompts with PromptSRC's self-regulating
# losses and Gaussian prompt aggregation (TRAINER.SEMPT.PROMPTSRC): parts, not trainers.
LABEL_BRANCHES = ("coop", "maple", "promptsrc")
#: Upstream-style configs wrote the deep branches' keys in the baselines' nodes; they still work.
BRANCH_ALIASES = {
    **{f"MAPLE.{key}": f"TRAINER.MAPLE.{key}" for key in ("N_CTX", "CTX_INIT", "CSC", "CLASS_TOKEN_POSITION", "PROMPT_DEPTH")},
    **{f"PROMPTSRC.{key}": f"TRAINER.PROMPTSRC.{key}" for key in (
        "N_CTX_TEXT", "N_CTX_VISION", "CTX_INIT", "PROMPT_DEPTH_TEXT", "PROMPT_DEPTH_VISION",
        "TEXT_LOSS_WEIGHT", "IMAGE_LOSS_WEIGHT", "GPA_MEAN", "GPA_STD")},
}


def _branch_node(node):
    """A branch's prompt keys: the part's node without PREC (SemPT's own PREC applies)."""
    node.pop("PREC")
    return node


@register_config
def sempt_config(cfg) -> None:
    # Label branch: the CoOp/KgCoOp prompt learner.
    cfg.TRAINER.SEMPT = prompt_config_node(n_ctx=4, ctx_init="a photo of a", prec="amp")
    # Attribute knowledge.
    cfg.TRAINER.SEMPT.ATTRIBUTE_FILE = ""  # "" = attribute_data/<dataset>.json
    cfg.TRAINER.SEMPT.DESC_ENCODER = "frozen"  # frozen | prompted
    cfg.TRAINER.SEMPT.DESC_CACHE_DIR = ""  # "" = $SEMPT_CACHE_DIR/descriptions or ~/.cache/sempt/descriptions
    cfg.TRAINER.SEMPT.PROMPTED_CHUNK = 256  # sentences per checkpointed text-encoder call (prompted)
    # Visually guided weighting and fusion.
    cfg.TRAINER.SEMPT.WEIGHTING = "visual"  # visual | uniform
    cfg.TRAINER.SEMPT.WEIGHT_TEMP = 0.0  # T_w; <= 0 means CLIP's own temperature 1/tau
    cfg.TRAINER.SEMPT.FUSION = "add"  # add: normalize(t + beta a) | attribute_only: normalize(a)
    cfg.TRAINER.SEMPT.FUSION_WEIGHT = 1.0  # beta
    # Loss: CE(label) + ATTR_LOSS_WEIGHT * CE(attribute) + KG_WEIGHT * L_kg.
    cfg.TRAINER.SEMPT.ATTR_LOSS_WEIGHT = 1.0
    cfg.TRAINER.SEMPT.KG_WEIGHT = 0.0
    # Inference: auto (label for seen classes, attribute for unseen) | label | attribute | ensemble.
    cfg.TRAINER.SEMPT.INFERENCE = "auto"
    # Label branch: coop (N_CTX/CTX_INIT/CSC/CLASS_TOKEN_POSITION above) | maple (the MAPLE
    # sub-node) | promptsrc (the PROMPTSRC sub-node: prompts, loss weights and GPA).
    cfg.TRAINER.SEMPT.LABEL_BRANCH = "coop"
    # The deep branches' keys, with MaPLe's and PromptSRC's defaults.
    cfg.TRAINER.SEMPT.MAPLE = _branch_node(coupled_prompt_config_node())
    cfg.TRAINER.SEMPT.PROMPTSRC = _branch_node(self_regulated_prompt_config_node())


class DescriptionPrompts(nn.Module):
    """``[SOS, V, tokens(s), EOS]`` for every description sentence, with the label
    branch's context ``V`` (``DESC_ENCODER prompted``).

    Encoding runs in length-sorted chunks under activation checkpointing, so the
    memory held for the backward pass is one chunk's, whatever ``C * K * J`` is.
    """

    def __init__(self, sentences: Sequence[str], clip_model: nn.Module, label_learner: PromptLearner, chunk: int):
        super().__init__()
        # A PromptLearner over the sentences provides the token layout; its own
        # context is dropped: the label branch's context is passed at call time.
        if label_learner.csc:
            raise ValueError("TRAINER.SEMPT.DESC_ENCODER prompted needs a generic context (CSC False)")
        with torch.random.fork_rng(devices=[]):  # the throw-away context must not shift the seed's RNG
            layout = PromptLearner(
                [s.rstrip(". ") for s in sentences], clip_model, n_ctx=label_learner.n_ctx, verbose=False
            )
        del layout.ctx
        self.layout = layout
        self.chunk = max(1, int(chunk))

    def forward(self, text_encoder: TextEncoder, ctx: torch.Tensor) -> torch.Tensor:
        return text_encoder.encode_prompts(
            lambda rows: self.layout.compose(ctx, rows),  # one chunk's prompts at a time
            self.layout.tokenized_prompts,
            chunk_size=self.chunk,
            checkpointing=ctx.requires_grad,
        )


class SemPTCLIP(PromptCLIP):
    """``PromptCLIP`` (label branch) + description embeddings and the attribute branch."""

    def __init__(
        self,
        clip_model: nn.Module,
        prompt_learner: PromptLearner,
        desc_embeddings: Optional[torch.Tensor],
        description_prompts: Optional[DescriptionPrompts],
        desc_groups: torch.Tensor,
        n_attr: int,
        kg_text_features: Optional[torch.Tensor],
    ) -> None:
        super().__init__(clip_model, prompt_learner)
        self.n_attr = n_attr
        self.description_prompts = description_prompts
        self.register_buffer("desc_groups", desc_groups, persistent=False)
        if desc_embeddings is not None:  # frozen: E and its Gram matrices are constants
            self.register_buffer("desc_embeddings", desc_embeddings, persistent=False)
            self.register_buffer("desc_gram", description_gram(desc_embeddings), persistent=False)
        else:
            self.desc_embeddings = None
            self.desc_gram = None
        if kg_text_features is not None:
            self.register_buffer("kg_text_features", kg_text_features, persistent=False)
        else:
            self.kg_text_features = None

    def description_features(self) -> Tuple[torch.Tensor, torch.Tensor]:
        """``E (C, K, D)`` and its Gram matrices; re-encoded (with gradient) when prompted."""
        if self.description_prompts is None:
            return self.desc_embeddings, self.desc_gram
        feats = self.description_prompts(self.text_encoder, self.prompt_learner.ctx)
        emb = pool_descriptions(feats, self.desc_groups, self.prompt_learner.n_cls, self.n_attr)
        return emb, description_gram(emb)

    def kg_score(self, text_features: torch.Tensor) -> torch.Tensor:
        return knowledge_guidance_loss(text_features.float(), self.kg_text_features.float())


@TRAINER_REGISTRY.register()
class SemPT(GPATrainerMixin, PromptTrainer):
    CFG_NODE = "SEMPT"
    CONFIG_ALIASES = BRANCH_ALIASES

    def check_cfg(self, cfg) -> None:
        super().check_cfg(cfg)
        node = cfg.TRAINER.SEMPT
        for key, allowed in (
            ("WEIGHTING", WEIGHTINGS),
            ("FUSION", FUSIONS),
            ("INFERENCE", INFERENCE_MODES),
            ("DESC_ENCODER", DESC_ENCODERS),
            ("LABEL_BRANCH", LABEL_BRANCHES),
        ):
            if node[key] not in allowed:
                raise ValueError(f"TRAINER.SEMPT.{key}={node[key]!r}; choose one of {list(allowed)}")
        if node.DESC_ENCODER == "prompted" and node.LABEL_BRANCH != "coop":
            raise ValueError(
                f"TRAINER.SEMPT.DESC_ENCODER prompted prepends the label branch's context to the descriptions, "
                f"which only the coop branch has (LABEL_BRANCH={node.LABEL_BRANCH!r}); use DESC_ENCODER frozen"
            )

    # -- model ----------------------------------------------------------------
    def build_custom_model(self, cfg, classnames: Sequence[str], clip_model: nn.Module) -> nn.Module:
        node = self.method_cfg
        # The classes the prompt was trained on: set by before_train (this run) or
        # load_model (from the checkpoint); empty = nothing trained, all unseen.
        self.seen_classnames: List[str] = []
        attr_path = find_attribute_file(cfg.DATASET.NAME, node.ATTRIBUTE_FILE)
        attr_file = load_attribute_file(attr_path)
        wnids = getattr(self.dm.dataset, "wnids", None)
        entries = match_classes(attr_file, classnames, wnids=wnids)
        self.attribute_names = attr_file.attribute_names
        sentences = [entry.sentences(self.attribute_names) for entry in entries]
        texts, groups = flatten_descriptions(sentences)
        print(
            f"Attribute knowledge: {attr_path} ({len(self.attribute_names)} attributes: "
            f"{', '.join(self.attribute_names)}; {len(texts)} sentences for {len(classnames)} classes)"
        )

        prompt_learner = self.build_label_branch(cfg, classnames, clip_model)
        text_encoder = TextEncoder(clip_model)
        desc_embeddings, description_prompts = None, None
        if node.DESC_ENCODER == "frozen":
            cache = SentenceEmbeddingCache.for_backbone(
                cfg.MODEL.BACKBONE.NAME, self.precision.compute_dtype, node.DESC_CACHE_DIR, clip_model,
                variant=self.precision.cache_variant(),
            )
            text_encoder.to(self.device)
            with self.precision.autocast():
                desc_embeddings = encode_descriptions(text_encoder, sentences, cache).to(clip_model.dtype)
        else:
            description_prompts = DescriptionPrompts(texts, clip_model, prompt_learner, node.PROMPTED_CHUNK)
            print(f"Descriptions are prompted with the learnable context ({len(texts)} sequences per step)")

        kg_features = None
        if node.KG_WEIGHT > 0:
            template = template_for(cfg.DATASET.NAME, CUSTOM_TEMPLATES_KG)
            kg_features = self.hand_crafted_features(text_encoder, classnames, [template])

        return SemPTCLIP(
            clip_model, prompt_learner, desc_embeddings, description_prompts, groups,
            len(self.attribute_names), kg_features,
        )

    def build_label_branch(self, cfg, classnames: Sequence[str], clip_model: nn.Module) -> PromptLearner:
        """The label branch's prompt learner (and, for promptsrc, its regularisers and GPA)."""
        branch = self.method_cfg.LABEL_BRANCH
        print(f"SemPT label branch: {branch}")
        if branch == "maple":
            maple = self.method_cfg.MAPLE
            return self.build_prompt_learner(
                classnames, clip_model, node=maple, learner_class=MultiModalPromptLearner,
                prompt_depth=maple.PROMPT_DEPTH, config_prefix="TRAINER.SEMPT.MAPLE",
            )
        if branch == "promptsrc":
            src = self.method_cfg.PROMPTSRC
            self.gpa = GaussianPromptAggregation(src.GPA_MEAN, src.GPA_STD, cfg.OPTIM.MAX_EPOCH, "TRAINER.SEMPT.PROMPTSRC")
            announce_gpa(self.gpa)
            self.self_regulation = SelfRegulation(src.TEXT_LOSS_WEIGHT, src.IMAGE_LOSS_WEIGHT)
            return build_vl_prompt_learner(classnames, clip_model, src, "TRAINER.SEMPT.PROMPTSRC")
        return self.build_prompt_learner(classnames, clip_model)

    def weight_temperature(self) -> float:
        temp = float(self.method_cfg.WEIGHT_TEMP)
        return temp if temp > 0 else float(1.0 / self.model.logit_scale.exp())

    def _attribute_logits(self, image_features, label_features, desc, gram, return_weights=False):
        """``z^A`` in fp32 even under mixed precision: it is cheap, and the norms it expands need the precision."""
        node = self.method_cfg
        with torch.autocast(device_type=image_features.device.type, enabled=False):
            return attribute_logits(
                image_features.float(), label_features.float(), desc.float(), self.model.logit_scale.exp().float(),
                self.weight_temperature(), node.FUSION_WEIGHT, node.WEIGHTING, node.FUSION,
                gram=None if gram is None else gram.float(), return_weights=return_weights,
            )

    # -- training -------------------------------------------------------------
    def before_train(self) -> None:
        super().before_train()
        self.seen_classnames = [normalize_classname(c) for c in self.dm.dataset.classnames]

    def checkpoint_extras(self) -> Dict[str, object]:
        extras = dict(super().checkpoint_extras())
        extras["seen_classnames"] = list(self.seen_classnames)  # set by before_train
        return extras

    def compute_loss(self, image: torch.Tensor, label: torch.Tensor) -> LossOutput:
        node = self.method_cfg
        model = self.model
        image_features = model.encode_image(image)
        label_features = model.text_features()
        label_logits = model.logits(image_features, label_features)
        losses = {"loss_label": F.cross_entropy(label_logits, label)}
        metrics = {"acc": compute_accuracy(label_logits, label)[0]}
        if self.method_cfg.LABEL_BRANCH == "promptsrc":
            losses.update(self.self_regulation.losses(model, image, image_features, label_features, label_logits))
        if node.ATTR_LOSS_WEIGHT > 0:
            desc, gram = model.description_features()
            attr_logits = self._attribute_logits(image_features, label_features, desc, gram)
            losses["loss_attr"] = node.ATTR_LOSS_WEIGHT * F.cross_entropy(attr_logits, label)
            metrics["acc_attr"] = compute_accuracy(attr_logits, label)[0]
        if node.KG_WEIGHT > 0:
            losses["loss_kg"] = node.KG_WEIGHT * model.kg_score(label_features)
        return losses, metrics

    # -- evaluation -----------------------------------------------------------
    def seen_mask(self) -> torch.Tensor:
        seen = set(self.seen_classnames)
        return torch.tensor([normalize_classname(c) in seen for c in self.dm.dataset.classnames])

    @torch.no_grad()
    def compute_eval_text_features(self):
        with self.precision.autocast():
            label_features = self.model.text_features()
            desc, gram = self.model.description_features()
        return label_features, desc, gram

    def before_test(self) -> None:
        super().before_test()
        mode = self.method_cfg.INFERENCE
        mask = self.seen_mask()
        self._eval_seen_mask = mask.to(self.device)
        n_seen = int(mask.sum())
        n_unseen = len(mask) - n_seen
        if mode == "auto":
            print(
                f"SemPT inference (auto): {n_seen} class(es) use label embeddings (seen in training), "
                f"{n_unseen} use attribute-enhanced embeddings (unseen)"
            )
        else:
            print(f"SemPT inference ({mode}): all {len(mask)} classes use the {mode} branch")
        self._need_attribute = mode in ("attribute", "ensemble") or (mode == "auto" and n_unseen > 0)
        self._weight_sum = torch.zeros(len(self.attribute_names), dtype=torch.float64)
        self._weight_count = 0

    def evaluate_batch(self, batch):
        image, label = self.parse_batch_test(batch)
        return self.model_inference(image, label), label

    def model_inference(self, image: Images, label: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Logits of ``image``; ``label`` (the true classes, when known) feeds only the diagnostic
        of the attribute weights, never the logits."""
        label_features, desc, gram = self._eval_text_features
        with self.precision.autocast():
            image_features = self.model.encode_image(image)
            label_logits = self.model.logits(image_features, label_features)
        if not self._need_attribute:
            return label_logits
        attr_logits, alpha = self._attribute_logits(image_features, label_features, desc, gram, return_weights=True)
        # Diagnostic: how the weighting spreads over the attributes of each image's own class.
        if label is not None and len(label) == alpha.shape[0]:
            rows = torch.arange(alpha.shape[0], device=alpha.device)
            self._weight_sum += alpha[rows, label.to(alpha.device)].sum(0).double().cpu()
            self._weight_count += alpha.shape[0]
        return select_by_exposure(label_logits.float(), attr_logits, self._eval_seen_mask, self.method_cfg.INFERENCE)

    def after_test(self) -> None:
        if getattr(self, "_weight_count", 0):
            mean = (self._weight_sum / self._weight_count).tolist()
            self.attribute_weight_means = dict(zip(self.attribute_names, mean))
            listed = ", ".join(f"{k} {v:.3f}" for k, v in self.attribute_weight_means.items())
            print(f"Mean attribute weights on the true class ({self.method_cfg.WEIGHTING}): {listed}")
        super().after_test()

    # -- checkpoints ----------------------------------------------------------
    def load_model(self, directory: str, epoch: Optional[int] = None):
        result = super().load_model(directory, epoch)
        if directory:
            seen = self.loaded_extras.get("seen_classnames")
            if seen is None:
                print("The checkpoint records no seen classes (not a SemPT checkpoint?): "
                      "every class is treated as unseen")
                seen = []
            self.seen_classnames = [normalize_classname(c) for c in seen]
        return result
