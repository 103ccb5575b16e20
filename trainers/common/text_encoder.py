"""CLIP's text tower, run only over the positions that can affect the result.

CLIP pads every sequence to 77 tokens and reads the feature at the EOT token.
The causal attention mask means position ``i`` only ever sees positions ``<= i``,
so the feature at the EOT is exactly the same if the transformer runs over the
first ``max(EOT) + 1`` positions only. Typical prompts end before position 20,
which cuts the text-side cost by about 4x (attention by more). A tower without a
causal mask, or pooled at its last position (SigLIP), runs its full length: what
is exact is decided by the model's ``TextSpec`` (``text_spec.py``).

Deep prompts (MaPLe, IVLP, PromptSRC, TCP) enter through ``deep_prompts``: one entry
per transformer block, replacing the prompt positions of that block's input. Prompt
positions come right after the tokenizer's prefix (CLIP's SOS), so they are always
before the EOT and the truncation stays exact.
"""
from __future__ import annotations

from typing import Callable, NamedTuple, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from .open_clip_backbone import project_text, projected_width
from .text_spec import TextSpec, text_spec

# Sequences per text-encoder call when encoding hand-crafted text: bounds the
# activation memory (about chunk * length * width floats per layer).
DEFAULT_CHUNK_SIZE = 1000


class BlendedPrompt(NamedTuple):
    """A deep prompt entry mixed into its positions instead of replacing them: they become
    ``weight * tokens + (1 - weight) * current`` (TCP's class-aware tokens; ``weight`` 1
    is a plain replacement). ``tokens`` is shaped as a tensor entry and split into chunks
    with its sequences like one."""

    tokens: torch.Tensor
    weight: float


#: What a deep prompt entry may be, for one block: ``None`` (leave the input as it is),
#: a tensor ``(n, width)`` or ``(N, n, width)`` that replaces positions ``1 .. n`` (right
#: after SOS), a :class:`BlendedPrompt` that mixes such tokens into them, or a callable
#: mapping the block's input ``(N, L, width)`` to a new one (for anything else).
DeepPrompt = Union[None, torch.Tensor, BlendedPrompt, Callable[[torch.Tensor], torch.Tensor]]
DeepPrompts = Sequence[DeepPrompt]


def prompt_length(prompt: DeepPrompt) -> int:
    """How many positions a tensor or blended entry covers (0 for ``None`` and callables)."""
    if isinstance(prompt, BlendedPrompt):
        prompt = prompt.tokens
    return prompt.shape[-2] if isinstance(prompt, torch.Tensor) else 0


def insert_deep_prompt(x: torch.Tensor, prompt: DeepPrompt, start: int) -> torch.Tensor:
    """Apply one deep prompt entry to ``x`` (``(L, N, width)``, the layout of CLIP's blocks).

    A tensor entry replaces positions ``start .. start + n`` (a blended one mixes into
    them); a negative ``start`` counts from the end (the visual tower's prompts are its
    last tokens).
    """
    if prompt is None:
        return x
    if callable(prompt) and not isinstance(prompt, torch.Tensor):
        return prompt(x.permute(1, 0, 2)).permute(1, 0, 2)
    tokens, weight = (prompt.tokens, prompt.weight) if isinstance(prompt, BlendedPrompt) else (prompt, 1.0)
    n = tokens.shape[-2]
    tokens = tokens.to(x.dtype)
    tokens = tokens.expand(x.shape[1], -1, -1) if tokens.dim() == 2 else tokens
    tokens = tokens.permute(1, 0, 2)
    begin = start if start >= 0 else x.shape[0] + start
    if weight != 1.0:
        tokens = weight * tokens + (1.0 - weight) * x[begin:begin + n]
    return torch.cat([x[:begin], tokens, x[begin + n:]], dim=0)


def check_deep_prompts(deep_prompts: Optional[DeepPrompts], n_blocks: int, tower: str) -> None:
    if deep_prompts is not None and len(deep_prompts) > n_blocks:
        raise ValueError(
            f"{len(deep_prompts)} deep prompt entries for the {n_blocks} blocks of the {tower} tower; "
            f"a prompt depth can be at most {n_blocks}"
        )


class TextEncoder(nn.Module):
    """``TextEncoder(clip_model)(prompts, tokenized)``: prompt embeddings -> projected EOT features.

    ``prompts`` is ``(N, L, width)`` with ``L >= max EOT + 1`` (``L`` may be < 77);
    ``tokenized`` is ``(N, >= L)``, used only to locate the EOT token (the largest id).
    ``deep_prompts[i]`` (see :data:`DeepPrompt`) is applied to the input of block ``i``.
    The modules are shared with ``clip_model`` (no copy).
    """

    def __init__(self, clip_model: nn.Module) -> None:
        super().__init__()
        self.transformer = clip_model.transformer
        self.positional_embedding = clip_model.positional_embedding
        self.ln_final = clip_model.ln_final
        self.text_projection = clip_model.text_projection
        self.token_embedding = clip_model.token_embedding
        # open_clip's blocks are batch-first (trainers/common/open_clip_backbone.py), OpenAI's are not.
        self.batch_first = bool(getattr(clip_model, "batch_first", False))
        # Tokenizer, prefix, pooling and causality of this model's text side.
        self.spec: TextSpec = text_spec(clip_model)
        # The same additive causal mask CLIP builds (None for a non-causal tower); sliced to the run length.
        mask = clip_model.build_attention_mask() if self.spec.causal else None
        self.register_buffer("causal_mask", mask, persistent=False)

    @property
    def dtype(self) -> torch.dtype:
        projection = self.text_projection
        return projection.weight.dtype if isinstance(projection, nn.Linear) else projection.dtype

    @property
    def output_dim(self) -> int:
        return projected_width(self.text_projection, self.width)

    @property
    def width(self) -> int:
        return self.ln_final.weight.shape[0]

    @property
    def n_blocks(self) -> int:
        return len(self.transformer.resblocks)

    def forward(
        self, prompts: torch.Tensor, tokenized: torch.Tensor, deep_prompts: Optional[DeepPrompts] = None
    ) -> torch.Tensor:
        pooled = self.spec.pooled_positions(tokenized)
        length = int(self.spec.run_lengths(tokenized).max())
        if prompts.shape[1] < length:
            raise ValueError(
                f"prompts hold {prompts.shape[1]} positions but the text tower must run {length} "
                f"(pooled position: {int(pooled.max())})"
            )
        check_deep_prompts(deep_prompts, self.n_blocks, "text")
        dtype = self.dtype
        start = self.spec.n_prefix  # deep prompts replace the positions right after the prefix
        x = prompts[:, :length].to(dtype) + self.positional_embedding[:length].to(dtype)
        mask = None
        if self.causal_mask is not None:
            mask = self.causal_mask[:length, :length].to(device=x.device, dtype=x.dtype)
        if self.batch_first:
            for i, block in enumerate(self.transformer.resblocks):
                if deep_prompts is not None and i < len(deep_prompts):
                    x = insert_deep_prompt(x.transpose(0, 1), deep_prompts[i], start=start).transpose(0, 1)
                x = block(x, attn_mask=mask)
        else:
            x = x.permute(1, 0, 2)  # NLD -> LND, the layout of CLIP's blocks
            for i, block in enumerate(self.transformer.resblocks):
                if deep_prompts is not None and i < len(deep_prompts):
                    x = insert_deep_prompt(x, deep_prompts[i], start=start)
                # The body of clip.model.ResidualAttentionBlock.forward, with the mask
                # of this length instead of the block's fixed 77 x 77 one.
                h = block.ln_1(x)
                x = x + block.attn(h, h, h, need_weights=False, attn_mask=mask)[0]
                x = x + block.mlp(block.ln_2(x))
            x = x.permute(1, 0, 2)
        # ln_final is per position: normalise the pooled rows only.
        rows = torch.arange(x.shape[0], device=x.device)
        x = self.ln_final(x[rows, pooled.to(x.device)]).to(dtype)
        return project_text(x, self.text_projection)

    def encode_prompts(
        self,
        prompts: Union[torch.Tensor, Callable[[torch.Tensor], torch.Tensor]],
        tokenized: torch.Tensor,
        deep_prompts: Optional[DeepPrompts] = None,
        chunk_size: Optional[int] = None,
        checkpointing: bool = False,
    ) -> torch.Tensor:
        """``forward`` in length-sorted chunks of ``chunk_size`` sequences (None: one call).

        ``prompts`` is the ``(N, L, width)`` tensor, or a callable returning the prompts of
        the given rows (then only one chunk's prompts exist at a time). With
        ``checkpointing`` each chunk's activations are recomputed in the backward pass
        instead of kept, so training memory is one chunk's, however many classes
        (ImageNet's 1000) or sentences there are; the result is the same. Per-sequence deep
        prompts (``(N, n, width)``, plain or blended) are split with their sequences;
        callable entries need ``chunk_size=None``.
        """
        n = tokenized.shape[0]
        if chunk_size is None or chunk_size >= n:
            chunk_size = n
        elif deep_prompts is not None and any(callable(p) and not isinstance(p, torch.Tensor) for p in deep_prompts):
            raise ValueError("callable deep prompts cannot be split into chunks; pass chunk_size=None")

        def encode_chunk(rows: Optional[torch.Tensor], length: int) -> torch.Tensor:
            """Encode the sequences ``rows`` (``None``: all, in order) cut to ``length``."""

            def select(t: torch.Tensor) -> torch.Tensor:
                return t if rows is None else t.index_select(0, rows.to(t.device))

            def select_entry(p: DeepPrompt) -> DeepPrompt:
                if isinstance(p, BlendedPrompt):
                    return BlendedPrompt(select_entry(p.tokens), p.weight)
                return select(p) if isinstance(p, torch.Tensor) and p.dim() == 3 and p.shape[0] == n else p

            chunk_deep = None if deep_prompts is None else [select_entry(p) for p in deep_prompts]

            def run() -> torch.Tensor:
                chunk = prompts(rows if rows is not None else torch.arange(n)) if callable(prompts) else select(prompts)
                return self(chunk[:, :length], select(tokenized)[:, :length], chunk_deep)

            if checkpointing and torch.is_grad_enabled():
                return checkpoint(run, use_reentrant=False)
            return run()

        if chunk_size == n:
            return encode_chunk(None, int(self.spec.run_lengths(tokenized).max()))
        return encode_length_sorted(tokenized, chunk_size, encode_chunk, self.spec.run_lengths(tokenized))

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
            return torch.empty(0, self.output_dim, device=device, dtype=self.dtype)

        def encode(idx: torch.Tensor, length: int) -> torch.Tensor:
            tokens = tokenized[idx, :length]
            return self(self.token_embedding(tokens), tokens)

        return encode_length_sorted(tokenized, chunk_size, encode, self.spec.run_lengths(tokenized))

    def tokenize(self, texts: Sequence[str]) -> torch.Tensor:
        """``texts`` tokenized by this model's tokenizer."""
        return self.spec.tokenize(texts)

    def encode_text(self, texts: Sequence[str], chunk_size: int = DEFAULT_CHUNK_SIZE) -> torch.Tensor:
        """Features of raw sentences (tokenized by the model's tokenizer)."""
        return self.encode_tokens(self.tokenize(texts), chunk_size=chunk_size)


def text_feature_width(clip_model: nn.Module) -> int:
    """Width of a model's text features (its projection's output)."""
    return projected_width(clip_model.text_projection, clip_model.ln_final.weight.shape[0])


def encode_length_sorted(
    tokenized: torch.Tensor,
    chunk_size: int,
    encode_chunk: Callable[[torch.Tensor, int], torch.Tensor],
    lengths: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """Run ``encode_chunk(rows, length)`` over chunks of ``chunk_size`` sequences sorted by
    the length each must run (``lengths``; default: up to CLIP's EOT, the largest id), each
    chunk cut to its own longest sequence; results come back in input order."""
    ends = tokenized.argmax(dim=-1) if lengths is None else lengths - 1
    order = torch.argsort(ends)
    chunks = []
    for start in range(0, tokenized.shape[0], chunk_size):
        rows = order[start:start + chunk_size]
        chunks.append(encode_chunk(rows, int(ends[rows].max()) + 1))
    features = torch.cat(chunks)
    return features[torch.argsort(order).to(features.device)]


def tokenize(texts: Sequence[str], clip_model: Optional[nn.Module] = None) -> torch.Tensor:
    """``texts`` tokenized by ``clip_model``'s tokenizer (CLIP's BPE by default), with an error
    that names the offending sentence and the limit."""
    return text_spec(clip_model).tokenize(texts)


@torch.no_grad()
def class_text_features(
    text_encoder: TextEncoder,
    classnames: Sequence[str],
    templates: Sequence[str],
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    normalize_templates: bool = True,
) -> torch.Tensor:
    """Frozen, L2-normalised class features from hand-crafted templates, ``(n_cls, dim)``.

    Each template is filled with the class name (``_`` -> space); with several
    templates the features are averaged and renormalised (the CLIP prompt ensemble).
    ``normalize_templates``: each template's features are normalised before the mean (as
    CLIP's ensemble); ``False`` averages the raw features (PromptSRC's frozen teacher,
    muzairkhattak/PromptSRC ``trainers/promptsrc.py``), which weights long feature
    vectors more. No gradient.
    """
    if not templates:
        raise ValueError("class_text_features needs at least one template")
    names = [name.replace("_", " ") for name in classnames]
    texts = [template.format(name) for template in templates for name in names]
    features = text_encoder.encode_text(texts, chunk_size=chunk_size)
    if normalize_templates:
        features = F.normalize(features, dim=-1)
    features = features.view(len(templates), len(names), -1)
    if len(templates) == 1 and normalize_templates:
        return features[0]
    return F.normalize(features.mean(dim=0), dim=-1)


__all__ = [
    "BlendedPrompt",
    "DEFAULT_CHUNK_SIZE",
    "DeepPrompt",
    "DeepPrompts",
    "TextEncoder",
    "check_deep_prompts",
    "class_text_features",
    "encode_length_sorted",
    "insert_deep_prompt",
    "prompt_length",
    "text_feature_width",
    "tokenize",
]
