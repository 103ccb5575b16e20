"""CLIP's text tower, run only over the positions that can affect the result.

CLIP pads every sequence to 77 tokens and reads the feature at the EOT token.
The causal attention mask means position ``i`` only ever sees positions ``<= i``,
so the feature at the EOT is exactly the same if the transformer runs over the
first ``max(EOT) + 1`` positions only. Typical prompts end before position 20,
which cuts the text-side cost by about 4x (attention by more).
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .openai_clip import clip

# Sequences per text-encoder call when encoding hand-crafted text: bounds the
# activation memory (about chunk * length * width floats per layer).
DEFAULT_CHUNK_SIZE = 1000


class TextEncoder(nn.Module):
    """``TextEncoder(clip_model)(prompts, tokenized)``: prompt embeddings -> projected EOT features.

    ``prompts`` is ``(N, L, width)`` with ``L >= max EOT + 1`` (``L`` may be < 77);
    ``tokenized`` is ``(N, >= L)``, used only to locate the EOT token (the largest id).
    The modules are shared with ``clip_model`` (no copy).
    """

    def __init__(self, clip_model: nn.Module) -> None:
        super().__init__()
        self.transformer = clip_model.transformer
        self.positional_embedding = clip_model.positional_embedding
        self.ln_final = clip_model.ln_final
        self.text_projection = clip_model.text_projection
        self.token_embedding = clip_model.token_embedding
        # The same additive causal mask CLIP builds; sliced to the run length.
        self.register_buffer("causal_mask", clip_model.build_attention_mask(), persistent=False)

    @property
    def dtype(self) -> torch.dtype:
        return self.text_projection.dtype

    def forward(self, prompts: torch.Tensor, tokenized: torch.Tensor) -> torch.Tensor:
        eot = tokenized.argmax(dim=-1)
        length = int(eot.max()) + 1
        if prompts.shape[1] < length:
            raise ValueError(
                f"prompts hold {prompts.shape[1]} positions but the EOT token sits at {length - 1}"
            )
        dtype = self.dtype
        x = prompts[:, :length].to(dtype) + self.positional_embedding[:length].to(dtype)
        x = x.permute(1, 0, 2)  # NLD -> LND, the layout of CLIP's blocks
        mask = self.causal_mask[:length, :length].to(device=x.device, dtype=x.dtype)
        for block in self.transformer.resblocks:
            # The body of clip.model.ResidualAttentionBlock.forward, with the mask
            # of this length instead of the block's fixed 77 x 77 one.
            h = block.ln_1(x)
            x = x + block.attn(h, h, h, need_weights=False, attn_mask=mask)[0]
            x = x + block.mlp(block.ln_2(x))
        x = x.permute(1, 0, 2)
        # ln_final is per position: normalise the EOT rows only.
        rows = torch.arange(x.shape[0], device=x.device)
        x = self.ln_final(x[rows, eot.to(x.device)]).to(dtype)
        return x @ self.text_projection

    def encode_tokens(self, tokenized: torch.Tensor, chunk_size: int = DEFAULT_CHUNK_SIZE) -> torch.Tensor:
        """Features of tokenized text (``clip.tokenize`` output), in chunks of ``chunk_size`` sequences.

        Sequences are sorted by length first, so each chunk runs only as long as its
        own longest sentence. Gradients flow if enabled by the caller.
        """
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        device = self.token_embedding.weight.device
        tokenized = tokenized.to(device)
        if tokenized.shape[0] == 0:
            return torch.empty(0, self.text_projection.shape[1], device=device, dtype=self.dtype)

        def encode(idx: torch.Tensor, length: int) -> torch.Tensor:
            tokens = tokenized[idx, :length]
            return self(self.token_embedding(tokens), tokens)

        return encode_length_sorted(tokenized, chunk_size, encode)

    def encode_text(self, texts: Sequence[str], chunk_size: int = DEFAULT_CHUNK_SIZE) -> torch.Tensor:
        """Features of raw sentences (tokenized with ``clip.tokenize``)."""
        return self.encode_tokens(tokenize(texts), chunk_size=chunk_size)


def encode_length_sorted(
    tokenized: torch.Tensor, chunk_size: int, encode_chunk: Callable[[torch.Tensor, int], torch.Tensor]
) -> torch.Tensor:
    """Run ``encode_chunk(rows, length)`` over chunks of ``chunk_size`` sequences sorted by
    EOT position, each cut to its own longest sequence; results come back in input order."""
    eot = tokenized.argmax(dim=-1)
    order = torch.argsort(eot)
    chunks = []
    for start in range(0, tokenized.shape[0], chunk_size):
        rows = order[start:start + chunk_size]
        chunks.append(encode_chunk(rows, int(eot[rows].max()) + 1))
    features = torch.cat(chunks)
    return features[torch.argsort(order).to(features.device)]


def tokenize(texts: Sequence[str]) -> torch.Tensor:
    """``clip.tokenize`` with an error that names the offending sentence and the limit."""
    texts = [texts] if isinstance(texts, str) else list(texts)
    try:
        return clip.tokenize(texts)
    except RuntimeError as err:
        raise ValueError(
            f"{err}. CLIP reads at most 77 tokens (75 without SOT/EOT); shorten the text "
            "(or the prompt context N_CTX / CTX_INIT)."
        ) from err


@torch.no_grad()
def class_text_features(
    text_encoder: TextEncoder,
    classnames: Sequence[str],
    templates: Sequence[str],
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> torch.Tensor:
    """Frozen, L2-normalised class features from hand-crafted templates, ``(n_cls, dim)``.

    Each template is filled with the class name (``_`` -> space); with several
    templates the normalised features are averaged and renormalised (the CLIP
    prompt ensemble). No gradient.
    """
    if not templates:
        raise ValueError("class_text_features needs at least one template")
    names = [name.replace("_", " ") for name in classnames]
    texts = [template.format(name) for template in templates for name in names]
    features = F.normalize(text_encoder.encode_text(texts, chunk_size=chunk_size), dim=-1)
    features = features.view(len(templates), len(names), -1)
    if len(templates) == 1:
        return features[0]
    return F.normalize(features.mean(dim=0), dim=-1)


__all__ = ["DEFAULT_CHUNK_SIZE", "TextEncoder", "encode_length_sorted", "tokenize", "class_text_features"]
