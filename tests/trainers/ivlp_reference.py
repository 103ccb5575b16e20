"""Independent references for IVLP and PromptSRC, written from the upstream sources
(muzairkhattak/multimodal-prompt-learning ``trainers/independentVL.py`` and the IVLP blocks of
``clip/model.py``; muzairkhattak/PromptSRC ``trainers/promptsrc.py``) with their fp16 casts
removed, on the plain CLIP modules: full 77-token text sequences, prompts inserted the way
``ResidualAttentionBlock_IVLP`` and upstream's ``VisionTransformer`` do, upstream's order of
operations. Parameters are passed in as a dict keyed by our names (copied from a learner).
"""
from __future__ import annotations

from typing import Dict, Sequence

import torch
import torch.nn.functional as F

from trainers.common.openai_clip import clip

Params = Dict[str, torch.Tensor]


def upstream_text_features(model, params: Params, prompt_prefix: str, classnames: Sequence[str],
                           depth_text: int) -> torch.Tensor:
    """VLPromptLearner.forward + TextEncoder.forward with IVLP's text blocks (unnormalised)."""
    n_ctx = params["ctx"].shape[0]
    names = [name.replace("_", " ") for name in classnames]
    tokenized = torch.cat([clip.tokenize(prompt_prefix + " " + name + ".") for name in names])
    with torch.no_grad():
        embedding = model.token_embedding(tokenized)
    ctx = params["ctx"].unsqueeze(0).expand(len(names), -1, -1)
    prompts = torch.cat([embedding[:, :1], ctx, embedding[:, 1 + n_ctx:]], dim=1)
    x = (prompts + model.positional_embedding).permute(1, 0, 2)
    for i, block in enumerate(model.transformer.resblocks):
        if i != 0 and i < depth_text:  # the block owns a VPT_shallow: it replaces positions 1..n
            context = params[f"deep_text_ctx.{i}"].expand(x.shape[1], -1, -1).permute(1, 0, 2)
            x = torch.cat([x[:1], context, x[1 + n_ctx:]], dim=0)
        x = block(x)
    x = model.ln_final(x.permute(1, 0, 2))
    return x[torch.arange(x.shape[0]), tokenized.argmax(dim=-1)] @ model.text_projection


def upstream_image_features(visual, image: torch.Tensor, params: Params, depth_vision: int) -> torch.Tensor:
    """Upstream's IVLP ``VisionTransformer.forward`` (unnormalised)."""
    x = visual.conv1(image)
    x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)
    x = torch.cat([visual.class_embedding + torch.zeros(x.shape[0], 1, x.shape[-1]), x], dim=1)
    x = x + visual.positional_embedding
    if depth_vision > 0:  # VPT appended after the positional embedding, before ln_pre
        x = torch.cat([x, params["visual_ctx"].expand(x.shape[0], -1, -1)], dim=1)
    x = visual.ln_pre(x).permute(1, 0, 2)
    for i, block in enumerate(visual.transformer.resblocks):
        if i != 0 and i < depth_vision:  # the last n tokens are the previous block's prompts
            context = params[f"deep_visual_ctx.{i}"]
            x = torch.cat([x[:x.shape[0] - context.shape[0]], context.expand(x.shape[1], -1, -1).permute(1, 0, 2)])
        x = block(x)
    x = x.permute(1, 0, 2)
    return visual.ln_post(x[:, 0, :]) @ visual.proj


def upstream_logits(model, params: Params, image: torch.Tensor, prompt_prefix: str, classnames: Sequence[str],
                    depth_text: int, depth_vision: int):
    """CustomCLIP.forward's logits, with the normalised text and image features."""
    text = upstream_text_features(model, params, prompt_prefix, classnames, depth_text)
    img = upstream_image_features(model.visual, image, params, depth_vision)
    img = img / img.norm(dim=-1, keepdim=True)
    text = text / text.norm(dim=-1, keepdim=True)
    return model.logit_scale.exp() * img @ text.t(), text, img


def upstream_teacher_text(model, classnames: Sequence[str], templates: Sequence[str]) -> torch.Tensor:
    """PromptSRC's ``fixed_embeddings``: per-template ``encode_text``, mean over templates (raw)."""
    names = [name.replace("_", " ") for name in classnames]
    with torch.no_grad():
        features = []
        for template in templates:
            tokens = torch.cat([clip.tokenize(template.replace("{}", name)) for name in names])
            features.append(model.encode_text(tokens).unsqueeze(1))
    return torch.cat(features, dim=1).mean(dim=1)


def upstream_promptsrc_losses(model, params: Params, image, label, prompt_prefix, classnames, depth_text,
                              depth_vision, templates, text_weight, image_weight) -> Dict[str, torch.Tensor]:
    """PromptSRC's CustomCLIP.forward (train mode) + forward_backward's loss terms."""
    logits, text, img = upstream_logits(model, params, image, prompt_prefix, classnames, depth_text, depth_vision)
    fixed = upstream_teacher_text(model, classnames, templates)
    fixed = fixed / fixed.norm(dim=-1, keepdim=True)
    with torch.no_grad():
        zs = model.visual(image)
        zs = zs / zs.norm(dim=-1, keepdim=True)
        zs_logits = model.logit_scale.exp() * zs @ fixed.t()
    ce = F.cross_entropy(logits, label)
    scl_text = F.l1_loss(text, fixed, reduction="mean") * text_weight
    scl_image = F.l1_loss(img, zs, reduction="mean") * image_weight
    scl_logits = F.kl_div(F.log_softmax(logits / 1, dim=1), F.log_softmax(zs_logits / 1, dim=1),
                          reduction="sum", log_target=True) * (1 * 1) / logits.numel()
    total = ce + (scl_logits + scl_text + scl_image)
    return {"loss": total, "loss_ce": ce, "loss_scl_text": scl_text, "loss_scl_image": scl_image,
            "loss_scl_logits": scl_logits}
