"""How a CLIP's text side reads its input: tokenizer, context length, prefix tokens, pooling.

OpenAI's CLIP: BPE with a start token, 77 positions, causal mask, the feature read at the
EOT (the largest id). open_clip models may differ on each point (SigLIP: a SentencePiece
tokenizer without start token, 64 positions, no causal mask, the last position pooled);
``trainers/common/open_clip_backbone.py`` describes them from the loaded model. The text
encoder and the prompt learners read every such fact from here, never from constants.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import torch
from torch import nn

from .openai_clip import clip

POOLINGS = ("argmax", "eos", "last", "first")


@dataclass(frozen=True)
class TextSpec:
    """The text side of one model (see the module docstring)."""

    tokenizer: Callable[[Sequence[str]], torch.Tensor]  # texts -> ids (N, context_length)
    count_tokens: Callable[[str], int]  # tokens of a text, without special tokens
    context_length: int
    n_prefix: int  # positions before the first word (CLIP's start token: 1; none: 0)
    pooling: str  # one of POOLINGS: which position's feature is the sentence's
    causal: bool
    eos_id: Optional[int] = None  # the token pooled by "eos"
    name: str = "CLIP"
    #: Tokens a text may have besides the special ones; ``None``: the tokenizer itself refuses
    #: longer texts (CLIP's). open_clip's tokenizers cut them silently, so they are checked here.
    max_tokens: Optional[int] = None

    @property
    def truncatable(self) -> bool:
        """Whether positions after the pooled token can be dropped without changing the result:
        only with a causal mask and pooling at the end token."""
        return self.causal and self.pooling in ("argmax", "eos")

    def tokenize(self, texts: Sequence[str] | str) -> torch.Tensor:
        texts = [texts] if isinstance(texts, str) else list(texts)
        if self.max_tokens is not None:
            for text in texts:
                if self.count_tokens(text) > self.max_tokens:
                    raise ValueError(
                        f"{text!r} has {self.count_tokens(text)} tokens; {self.name}'s text tower reads at most "
                        f"{self.max_tokens} besides its special tokens. Shorten the text (or the prompt "
                        "context N_CTX / CTX_INIT)."
                    )
        try:
            return self.tokenizer(texts)
        except RuntimeError as err:
            raise ValueError(
                f"{err}. {self.name}'s text tower reads at most {self.context_length} tokens"
                f"{' (75 without SOT/EOT)' if self.context_length == 77 and self.n_prefix else ''}; shorten the text "
                "(or the prompt context N_CTX / CTX_INIT)."
            ) from err

    def pooled_positions(self, tokenized: torch.Tensor) -> torch.Tensor:
        """Per sequence, the position whose feature is pooled."""
        if self.pooling == "argmax":
            return tokenized.argmax(dim=-1)
        if self.pooling == "eos":
            return (tokenized == self.eos_id).int().argmax(dim=-1)
        position = tokenized.shape[-1] - 1 if self.pooling == "last" else 0
        return torch.full(tokenized.shape[:-1], position, dtype=torch.long, device=tokenized.device)

    def run_lengths(self, tokenized: torch.Tensor) -> torch.Tensor:
        """Per sequence, how many positions must run: up to its pooled token when that is exact
        (:attr:`truncatable`), else all of them."""
        if self.truncatable:
            return self.pooled_positions(tokenized) + 1
        return torch.full(tokenized.shape[:-1], tokenized.shape[-1], dtype=torch.long, device=tokenized.device)


def _clip_tokenize(texts: Sequence[str]) -> torch.Tensor:
    return clip.tokenize(list(texts))


_clip_bpe = clip.simple_tokenizer.SimpleTokenizer()

#: OpenAI's CLIP (and every model with its tokenizer and text tower).
CLIP_TEXT = TextSpec(
    tokenizer=_clip_tokenize,
    count_tokens=lambda text: len(_clip_bpe.encode(text)),
    context_length=77,
    n_prefix=1,
    pooling="argmax",
    causal=True,
)


def text_spec(clip_model: Optional[nn.Module]) -> TextSpec:
    """The :class:`TextSpec` of a loaded model (OpenAI's CLIP when it declares none)."""
    spec = getattr(clip_model, "text_spec", None)
    return spec if isinstance(spec, TextSpec) else CLIP_TEXT


__all__ = ["CLIP_TEXT", "POOLINGS", "TextSpec", "text_spec"]
