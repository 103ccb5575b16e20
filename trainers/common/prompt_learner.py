"""The CoOp prompt learner: ``[SOS] [ctx_1 .. ctx_M] [class tokens] . [EOS]``.

Written once for CoOp, CoCoOp, KgCoOp and SemPT:

* context vectors generic (``(M, d)``) or class-specific (``CSC``: ``(n_cls, M, d)``);
* ``ctx_init`` words initialise the context from CLIP's token embeddings, with
  ``M`` = the number of BPE tokens of the words (not the word count), or, with
  ``keep_n_ctx`` (MaPLe, IVLP, PromptSRC), ``M = n_ctx``: the first ``n_ctx`` tokens
  learn and the rest of the words stay in the prompt as frozen text;
* class-token position ``end`` | ``middle`` | ``front``.

Subclasses change one piece each: ``initial_context`` (how the context starts),
``prompt_text`` (the sentence around the class name), and the deep-prompt seams
``text_deep_prompts`` / ``visual_prompts`` / ``visual_deep_prompts`` that
``PromptCLIP`` hands to the two towers (``None`` here: CoOp prompts the input only).

The class-name-dependent tensors (``token_prefix``, ``token_suffix``) are
non-persistent buffers: checkpoints hold only the context, so a prompt trained
on base classes loads onto any other class set. They are cut to the longest
prompt of the class set, since nothing after the last EOT affects the features
(see ``text_encoder``).
"""
from __future__ import annotations

from typing import ClassVar, List, Optional, Sequence, Tuple

import torch
from torch import nn

from .text_encoder import DeepPrompts
from .text_spec import CLIP_TEXT, text_spec

CLASS_TOKEN_POSITIONS = ("end", "middle", "front")


def bpe_length(text: str) -> int:
    """Number of CLIP BPE tokens of ``text`` (without SOT/EOT)."""
    return CLIP_TEXT.count_tokens(text)


def init_context(
    clip_model: nn.Module,
    n_ctx: int,
    ctx_init: str = "",
    n_cls: Optional[int] = None,
    keep_n_ctx: bool = False,
) -> Tuple[torch.Tensor, str]:
    """Initial context vectors and the prompt text they stand in for.

    With ``ctx_init`` the vectors are the token embeddings of those words and ``n_ctx``
    is ignored (it becomes their BPE count), unless ``keep_n_ctx``: then the first
    ``n_ctx`` tokens are the context and the text stays whole, so the remaining words
    are frozen prompt tokens (upstream MaPLe: "a photo of a", ``N_CTX 2`` learns "a photo");
    an ``n_ctx`` longer than the words falls back to the random init, as upstream. Without
    ``ctx_init``: ``n_ctx`` vectors drawn from N(0, 0.02) and the text "X X ...".
    ``n_cls`` given -> class-specific copies ``(n_cls, M, d)``.
    """
    dtype = clip_model.dtype
    ctx_dim = clip_model.ln_final.weight.shape[0]
    spec = text_spec(clip_model)
    ctx_init = ctx_init.replace("_", " ").strip()
    if ctx_init and not (keep_n_ctx and n_ctx > spec.count_tokens(ctx_init)):
        n_tokens = n_ctx if keep_n_ctx else spec.count_tokens(ctx_init)
        with torch.no_grad():
            embedding = clip_model.token_embedding(spec.tokenize(ctx_init)).to(dtype)
        vectors = embedding[0, spec.n_prefix:spec.n_prefix + n_tokens].clone()
        if n_cls is not None:
            vectors = vectors.unsqueeze(0).repeat(n_cls, 1, 1)
        return vectors, ctx_init
    if n_ctx < 1:
        raise ValueError(f"N_CTX must be >= 1 without CTX_INIT, got {n_ctx}")
    shape = (n_ctx, ctx_dim) if n_cls is None else (n_cls, n_ctx, ctx_dim)
    vectors = torch.empty(*shape, dtype=dtype)
    nn.init.normal_(vectors, std=0.02)
    return vectors, " ".join(["X"] * n_ctx)


class PromptLearner(nn.Module):
    """Learnable context + fixed class-name token embeddings -> prompt embeddings.

    ``forward()`` returns ``(n_cls, L, d)`` prompts for ``TextEncoder(prompts,
    self.tokenized_prompts)``; ``compose(ctx)`` builds prompts from any context of
    shape ``(..., M, d)`` whose leading dims broadcast against ``(n_cls,)`` (e.g.
    ``(B, 1, M, d)`` per-image contexts -> ``(B, n_cls, L, d)``, as in CoCoOp).
    """

    def __init__(
        self,
        classnames: Sequence[str],
        clip_model: nn.Module,
        n_ctx: int = 16,
        ctx_init: str = "",
        csc: bool = False,
        class_token_position: str = "end",
        keep_n_ctx: bool = False,
        verbose: bool = True,
    ) -> None:
        super().__init__()
        if class_token_position not in CLASS_TOKEN_POSITIONS:
            raise ValueError(
                f"CLASS_TOKEN_POSITION={class_token_position!r}; choose one of {list(CLASS_TOKEN_POSITIONS)}"
            )
        if not classnames:
            raise ValueError("PromptLearner needs at least one class name")
        self.n_cls = len(classnames)
        self.csc = bool(csc)
        self.text_spec = spec = text_spec(clip_model)
        self.class_token_position = class_token_position

        ctx, prompt_prefix = self.initial_context(clip_model, n_ctx, ctx_init, self.n_cls if csc else None, keep_n_ctx)
        self.n_ctx = ctx.shape[-2]
        self.prompt_prefix = prompt_prefix
        if verbose:
            kind = "class-specific" if csc else "generic"
            print(f'Initial context: "{prompt_prefix}" ({kind})')
            print(f"Number of context words (tokens): {self.n_ctx}")
        self.ctx = nn.Parameter(ctx)
        if spec.count_tokens(prompt_prefix) < self.n_ctx:
            raise ValueError(
                f'the context text "{prompt_prefix}" is {spec.count_tokens(prompt_prefix)} tokens in '
                f"{spec.name}'s tokenizer, fewer than the {self.n_ctx} context vectors that replace it; "
                "set CTX_INIT to words of at least N_CTX tokens"
            )
        if class_token_position != "end" and (
            type(self).prompt_text is not PromptLearner.prompt_text or spec.count_tokens(prompt_prefix) != self.n_ctx
        ):
            raise ValueError(
                f"CLASS_TOKEN_POSITION={class_token_position!r} moves the class name inside the context, "
                "so the prompt must be the context and the class name only; use 'end' with frozen "
                "prompt words (keep_n_ctx) or a custom prompt_text"
            )

        self.classnames: List[str] = [name.replace("_", " ") for name in classnames]
        self.name_lens = [spec.count_tokens(name) for name in self.classnames]
        prompts = [self.prompt_text(name) for name in self.classnames]
        tokenized = spec.tokenize(prompts)
        length = int(spec.run_lengths(tokenized).max())
        tokenized = tokenized[:, :length]
        with torch.no_grad():
            embedding = clip_model.token_embedding(tokenized).to(clip_model.dtype)
        # Plain CPU attribute as upstream: only read to locate the EOT (no device sync).
        self.tokenized_prompts = tokenized
        prefix = spec.n_prefix  # CLIP's SOS; none for a tokenizer without a start token
        self.register_buffer("token_prefix", embedding[:, :prefix].clone(), persistent=False)
        self.register_buffer("token_suffix", embedding[:, prefix + self.n_ctx:].clone(), persistent=False)
        index = self._position_index(length)
        self.register_buffer("position_index", index, persistent=False)

    #: Whether the prompts reach into the image tower (then image features depend on them).
    prompts_image_tower: ClassVar[bool] = False

    def initial_context(
        self, clip_model: nn.Module, n_ctx: int, ctx_init: str, n_cls: Optional[int], keep_n_ctx: bool
    ) -> Tuple[torch.Tensor, str]:
        """The starting context and the text it replaces (``init_context``); override to change the init."""
        return init_context(clip_model, n_ctx, ctx_init, n_cls, keep_n_ctx)

    def prompt_text(self, classname: str) -> str:
        """The sentence tokenized for ``classname``; its first ``n_ctx`` tokens after the prefix
        (CLIP's SOS) are replaced by the context."""
        return f"{self.prompt_prefix} {classname}."

    # -- seams for prompts beyond the text input (see text_encoder.DeepPrompt) -------
    def text_deep_prompts(self) -> Optional[DeepPrompts]:
        """Per text block, what replaces its prompt positions (``None``: nothing)."""
        return None

    def visual_prompts(self) -> Optional[torch.Tensor]:
        """Tokens ``(n, width)`` appended to the image tokens (``None``: none)."""
        return None

    def visual_deep_prompts(self) -> Optional[DeepPrompts]:
        """Per image block, what replaces its last ``n`` tokens (``None``: nothing)."""
        return None

    def _position_index(self, length: int) -> Optional[torch.Tensor]:
        """Per class, where each position of the ``end`` layout moves to (None for ``end``)."""
        if self.class_token_position == "end":
            return None
        m, p = self.n_ctx, self.text_spec.n_prefix
        rows = []
        for name_len in self.name_lens:
            sot, ctx = list(range(p)), list(range(p, p + m))
            name = list(range(p + m, p + m + name_len))
            rest = list(range(p + m + name_len, length))
            if self.class_token_position == "front":
                rows.append(sot + name + ctx + rest)
            else:  # middle: the class name between the two halves of the context
                half = m // 2
                rows.append(sot + ctx[:half] + name + ctx[half:] + rest)
        return torch.tensor(rows, dtype=torch.long)

    def compose(self, ctx: torch.Tensor, rows: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Prompts ``(..., n, L, d)`` of all classes, or of the classes ``rows`` only (``n``).

        ``ctx`` is ``(..., M, d)`` with leading dims broadcasting against ``(n_cls,)``; with
        ``rows``, a class-specific ``(n_cls, M, d)`` context is taken at those rows too.
        """
        prefix, suffix, index = self.token_prefix, self.token_suffix, self.position_index
        n = self.n_cls
        if rows is not None:
            rows = rows.to(prefix.device)
            prefix, suffix = prefix[rows], suffix[rows]
            index = index[rows] if index is not None else None
            if ctx.dim() >= 3 and ctx.shape[-3] == n:
                ctx = ctx.index_select(-3, rows.to(ctx.device))
            n = len(rows)
        lead = torch.broadcast_shapes(ctx.shape[:-2], (n,))
        dim = ctx.shape[-1]
        parts = [prefix.expand(*lead, -1, -1), ctx.expand(*lead, -1, -1), suffix.expand(*lead, -1, -1)]
        prompts = torch.cat(parts, dim=-2)
        if index is not None:
            prompts = prompts.gather(-2, index.expand(*lead, -1).unsqueeze(-1).expand(*lead, -1, dim))
        return prompts

    def forward(self) -> torch.Tensor:
        return self.compose(self.ctx)

    def extra_repr(self) -> str:
        return (
            f"n_cls={self.n_cls}, n_ctx={self.n_ctx}, csc={self.csc}, "
            f"class_token_position={self.class_token_position!r}"
        )


__all__ = ["CLASS_TOKEN_POSITIONS", "bpe_length", "init_context", "PromptLearner"]
