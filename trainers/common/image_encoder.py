"""CLIP's image tower with seams for visual prompts, in three stages.

For a ViT, ``forward`` is CLIP's ``VisionTransformer.forward`` cut where prompt methods
need to reach in (the stages of open_clip's ``_embeds`` / ``transformer`` / ``_pool``):

1. ``embed(image)``: patch embedding, class token and positional embedding, ``(N, 1+P, width)``;
2. visual prompts ``(n, width)`` or ``(N, n, width)`` are appended after those tokens, with
   no positional embedding (shallow prompts, VPT / MaPLe / IVLP);
3. ``encode_tokens(x, deep_prompts)``: ``ln_pre`` and the blocks; ``deep_prompts[i]``
   replaces the *last* ``n`` tokens of block ``i``'s input (deep prompts; a callable entry
   maps the whole ``(N, L, width)`` input, see ``text_encoder.DeepPrompt``);
4. ``pool(x)``: ``ln_post`` of the class token and the projection.

A ResNet backbone has no token sequence: the same interface runs CLIP's
``ModifiedResNet`` as it is and refuses prompts with an error that says so.

The encoder takes a tensor of pixels or an ``ImageBatch`` (``dassl/data/batch.py``: the
images of a loader's batch with their items' identities, as trainers receive them). A
trainer whose image tower is frozen attaches a ``feature_server``
(``trainers/common/feature_cache.py``): calls without prompts then go through it, which
serves an ``ImageBatch``'s features by its items' keys (cached or computed) and computes
plain tensors in a canonical way; ``compute`` is the plain computation.
"""
from __future__ import annotations

from typing import Optional, Union

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from dassl.data.batch import ImageBatch

from .text_encoder import DeepPrompts, check_deep_prompts, insert_deep_prompt, prompt_length


def timm_trunk(visual: nn.Module) -> Optional[nn.Module]:
    """The timm ViT or EVA inside open_clip's ``TimmModel`` whose stages the encoder can split
    (patch + position embedding, blocks, norm and head), else ``None``."""
    trunk = getattr(visual, "trunk", None)
    needed = ("patch_embed", "_pos_embed", "norm_pre", "blocks", "norm", "forward_head", "num_prefix_tokens")
    if trunk is None or not all(hasattr(trunk, name) for name in needed) or not hasattr(visual, "head"):
        return None
    if getattr(trunk, "dynamic_img_size", False) or getattr(trunk, "rope_mixed", False):
        return None  # position embeddings that depend on the input or the block: not split here
    patch_drop = getattr(trunk, "patch_drop", None)  # a timm ViT's is a module, an EVA's may be None
    if patch_drop is not None and not isinstance(patch_drop, nn.Identity):
        return None
    return trunk


def rotary_embedding(trunk: nn.Module, n_tokens: int) -> Optional[torch.Tensor]:
    """An EVA trunk's rotary embedding (``cat(sin, cos)`` per patch) for ``n_tokens`` tokens:
    tokens past the patches (visual prompts) get the identity rotation (sin 0, cos 1), so
    like CLIP's prompt tokens they carry no position."""
    rope = getattr(trunk, "rope", None)
    if rope is None:
        return None
    embedding = rope.get_embed() if hasattr(rope, "feat_shape") else rope.get_embed(shape=trunk.patch_embed.grid_size)
    extra = n_tokens - trunk.num_prefix_tokens - embedding.shape[0]
    if extra > 0:
        half = embedding.shape[-1] // 2
        identity = torch.cat([embedding.new_zeros(extra, half), embedding.new_ones(extra, half)], dim=-1)
        embedding = torch.cat([embedding, identity], dim=0)
    return embedding


class ImageEncoder(nn.Module):
    """``ImageEncoder(clip_model.visual)(image, prompts=None, deep_prompts=None)`` -> ``(N, dim)``.

    ``checkpointing`` recomputes each block's activations in the backward pass instead of
    keeping them (methods that train through the image tower). Shares ``visual``'s modules.
    """

    def __init__(self, visual: nn.Module) -> None:
        super().__init__()
        self.visual = visual
        # OpenAI's VisionTransformer and open_clip's share these stages and names (open_clip's
        # blocks are batch-first); a timm ViT or EVA inside open_clip's TimmModel has its own.
        self.trunk = timm_trunk(visual)
        self.is_clip_vit = all(hasattr(visual, name) for name in ("conv1", "class_embedding", "ln_pre", "transformer"))
        self.is_vit = self.is_clip_vit or self.trunk is not None
        self.batch_first = self.trunk is not None or (
            self.is_clip_vit and bool(getattr(visual.transformer, "batch_first", False))
        )
        self.checkpointing = False
        self.feature_server = None  # a dassl.features.ImageFeatureServer, set by the trainer

    @property
    def dtype(self) -> torch.dtype:
        if self.is_clip_vit:
            return self.visual.conv1.weight.dtype
        return next(p.dtype for p in self.visual.parameters() if p.is_floating_point())

    @property
    def output_dim(self) -> int:
        return self.visual.output_dim

    @property
    def width(self) -> int:
        """Token width of a ViT (the width visual prompts must have)."""
        self._require_vit("has no token width")
        return self.trunk.embed_dim if self.trunk is not None else self.visual.conv1.out_channels

    @property
    def n_blocks(self) -> int:
        self._require_vit("has no transformer blocks")
        return len(self.blocks)

    @property
    def blocks(self) -> nn.ModuleList:
        return self.trunk.blocks if self.trunk is not None else self.visual.transformer.resblocks

    @property
    def n_image_tokens(self) -> int:
        """Tokens of an embedded image before any prompt (class/register tokens and patches)."""
        if self.trunk is not None:
            return self.trunk.num_prefix_tokens + self.trunk.patch_embed.num_patches
        return self.visual.positional_embedding.shape[0]

    def _require_vit(self, what: str) -> None:
        if not self.is_vit:
            raise TypeError(
                f"The image encoder is a {type(self.visual).__name__} (not a ViT with CLIP's stages: a ResNet, "
                f"or a timm tower of open_clip), which {what}: visual prompts need a ViT backbone "
                "(MODEL.BACKBONE.NAME ViT-B/16, ViT-B/32, open_clip:ViT-B-16, ...)"
            )

    def embed(self, image: torch.Tensor) -> torch.Tensor:
        """Patch tokens with the class token first and positional embeddings added, ``(N, 1+P, width)``."""
        self._require_vit("cannot embed images as tokens")
        if self.trunk is not None:
            x = self.trunk._pos_embed(self.trunk.patch_embed(image.to(self.dtype)))
            return x[0] if isinstance(x, tuple) else x  # EVA returns its rotary embedding too (see encode_tokens)
        v = self.visual
        x = v.conv1(image.to(self.dtype))
        x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)
        cls = v.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1)
        return x + v.positional_embedding.to(x.dtype)

    def encode_tokens(self, x: torch.Tensor, deep_prompts: Optional[DeepPrompts] = None) -> torch.Tensor:
        """``ln_pre`` and the transformer blocks over tokens ``(N, L, width)``."""
        check_deep_prompts(deep_prompts, self.n_blocks, "image")
        block_kwargs = {}
        if self.trunk is not None:
            x = self.trunk.norm_pre(x)
            rope = rotary_embedding(self.trunk, x.shape[1])
            if rope is not None:
                block_kwargs["rope"] = rope
        else:
            x = self.visual.ln_pre(x)
        if not self.batch_first:
            x = x.permute(1, 0, 2)  # NLD -> LND, the layout of OpenAI CLIP's blocks
        for i, block in enumerate(self.blocks):
            prompt = deep_prompts[i] if deep_prompts is not None and i < len(deep_prompts) else None
            if prompt is not None:
                start = -prompt_length(prompt)
                if self.batch_first:
                    x = insert_deep_prompt(x.transpose(0, 1), prompt, start=start).transpose(0, 1)
                else:
                    x = insert_deep_prompt(x, prompt, start=start)
            if self.checkpointing and torch.is_grad_enabled():
                x = checkpoint(block, x, use_reentrant=False, **block_kwargs)
            else:
                x = block(x, **block_kwargs)
        return x if self.batch_first else x.permute(1, 0, 2)

    def pool(self, x: torch.Tensor) -> torch.Tensor:
        """``ln_post`` of the class token, projected: ``(N, dim)``. A timm tower pools its own way
        (class token, average or attention pooling) over the image tokens, prompts left out."""
        if self.trunk is not None:
            x = self.trunk.forward_head(self.trunk.norm(x[:, :self.n_image_tokens]))
            return self.visual.head(x)
        v = self.visual
        x = v.ln_post(x[:, 0, :])
        return x @ v.proj if v.proj is not None else x

    def forward(
        self,
        image: Union[torch.Tensor, ImageBatch],
        prompts: Optional[torch.Tensor] = None,
        deep_prompts: Optional[DeepPrompts] = None,
    ) -> torch.Tensor:
        """The features ``(N, dim)`` of ``image`` (pixels, or an ``ImageBatch``). With a feature
        server and no prompts: an identified ``ImageBatch`` is served by its items' keys, any
        other images are computed canonically (see the module docstring)."""
        server = self.feature_server
        if server is not None and (prompts is not None or deep_prompts is not None):
            # A server is attached only when the model declared its image features fixed.
            raise RuntimeError(
                "The image tower got visual prompts, but the model declares image_features_are_fixed True, "
                "so its image features are served by the frozen-feature cache. Make the model's "
                "image_features_are_fixed False when what the method learns reaches the image tower "
                "(a PromptLearner with prompts_image_tower = True does it for PromptCLIP; a custom "
                "CLIPClassifier overrides the image_features_are_fixed property)."
            )
        if isinstance(image, ImageBatch):
            differentiated = image.has_pixels and image.pixels.requires_grad  # e.g. adversarial pixels
            if server is not None and image.identified and not differentiated:
                return server.features(image)
            image = image.pixels
        if server is not None and not image.requires_grad:
            return server.compute(image)
        return self.compute(image, prompts, deep_prompts)

    def compute(
        self,
        image: torch.Tensor,
        prompts: Optional[torch.Tensor] = None,
        deep_prompts: Optional[DeepPrompts] = None,
    ) -> torch.Tensor:
        """The features of ``image`` (pixels), computed as they are (no feature server)."""
        if not self.is_vit:
            if prompts is not None or deep_prompts is not None:
                self._require_vit("takes no visual prompts")
            return self.visual(image.to(self.dtype))
        x = self.embed(image)
        if prompts is not None:
            tokens = prompts.to(x.dtype)
            tokens = tokens.expand(x.shape[0], -1, -1) if tokens.dim() == 2 else tokens
            x = torch.cat([x, tokens], dim=1)
        return self.pool(self.encode_tokens(x, deep_prompts))


__all__ = ["ImageEncoder"]
