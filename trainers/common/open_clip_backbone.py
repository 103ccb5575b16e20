"""open_clip models behind the interface the CLIP pieces read (the surface of OpenAI's ``clip.model.CLIP``).

``MODEL.BACKBONE.NAME open_clip:<model name | path to a model config JSON>`` with
``MODEL.BACKBONE.PRETRAINED <pretrained tag | checkpoint file | hf-hub:org/repo | random>``.

:func:`load_open_clip` builds the model with open_clip's own factory and tokenizer and
returns an :class:`OpenCLIP`: a module whose children are the open_clip model's own
towers under the names OpenAI's CLIP uses (``token_embedding``, ``positional_embedding``,
``transformer``, ``ln_final``, ``text_projection``, ``visual``, ``logit_scale``), so the
text and image encoders, the prompt learners and every method run on it unchanged. What
differs between the two, the encoders read from here: open_clip's blocks are batch-first
(:attr:`OpenCLIP.batch_first`), and the text tower's pooling and mask must allow the
truncation after the last EOT (:meth:`OpenCLIP.check_text_tower`).

Supported today: the OpenAI-architecture family (``CLIP`` with a causal text tower, argmax
pooling, CLIP's BPE tokenizer at 77 tokens and a class-token ``VisionTransformer``:
ViT-B-16, ViT-L-14 with openai, LAION, DFN, MetaCLIP weights). Other families
(``CustomTextCLIP``: SigLIP, EVA02) are refused with an error naming the backbone.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path
from typing import Iterator, Optional

import torch
from torch import nn

from .openai_clip import clip

OPEN_CLIP_PREFIX = "open_clip:"
RANDOM_WEIGHTS = "random"
HF_HUB_PREFIX = "hf-hub:"


def is_open_clip_name(name: str) -> bool:
    """Whether ``MODEL.BACKBONE.NAME`` selects an open_clip model."""
    return str(name).startswith(OPEN_CLIP_PREFIX)


def _open_clip():
    try:
        import open_clip
    except ImportError as err:  # pragma: no cover - installed with the project
        raise ImportError(
            "MODEL.BACKBONE.NAME open_clip:... needs the open_clip_torch package: pip install open_clip_torch"
        ) from err
    return open_clip


def _offline() -> bool:
    return any(
        os.environ.get(var, "").lower() not in ("", "0", "false", "no") for var in ("CLIP_OFFLINE", "HF_HUB_OFFLINE")
    )


def resolve_model_name(spec: str) -> str:
    """The open_clip model name of ``open_clip:<name | config.json>``; a config file is
    registered with open_clip's factory under its file stem (as ``add_model_config`` does)."""
    open_clip = _open_clip()
    spec = spec[len(OPEN_CLIP_PREFIX):] if is_open_clip_name(spec) else spec
    if not spec:
        raise ValueError(
            "MODEL.BACKBONE.NAME 'open_clip:' names no model; write open_clip:<model name> "
            "(e.g. open_clip:ViT-B-16, see open_clip.list_models()) or open_clip:<path to a model config JSON>"
        )
    if spec.endswith(".json"):
        path = Path(spec).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"MODEL.BACKBONE.NAME open_clip:{spec}: no such model config file")
        try:
            json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ValueError(f"{path} is not a valid open_clip model config (JSON): {err}") from err
        open_clip.add_model_config(str(path))
        return path.stem
    if spec.startswith(HF_HUB_PREFIX):
        return spec
    if spec not in open_clip.list_models():
        raise ValueError(
            f"MODEL.BACKBONE.NAME open_clip:{spec}: open_clip has no model of that name; "
            f"see open_clip.list_models(), or give the path of a model config JSON"
        )
    return spec


def _missing_pretrained_error(model: str) -> ValueError:
    open_clip = _open_clip()
    tags = open_clip.list_pretrained_tags_by_model(model) if not model.startswith(HF_HUB_PREFIX) else []
    shown = ", ".join(tags[:8]) + (", ..." if len(tags) > 8 else "") if tags else "none known to open_clip"
    return ValueError(
        f"MODEL.BACKBONE.PRETRAINED is empty for open_clip:{model}: no weights are loaded silently. "
        f"Set it to a pretrained tag ({shown}), a checkpoint file, hf-hub:org/repo, "
        f"or '{RANDOM_WEIGHTS}' for randomly initialised weights."
    )


def _weights_error(model: str, pretrained: str, err: Exception) -> FileNotFoundError:
    open_clip = _open_clip()
    if pretrained.startswith(HF_HUB_PREFIX):
        repo, filename = pretrained[len(HF_HUB_PREFIX):], "open_clip_config.json open_clip_pytorch_model.bin"
    else:
        cfg = open_clip.get_pretrained_cfg(model, pretrained) or {}
        repo, filename = os.path.split(cfg.get("hf_hub", ""))
        filename = filename or "open_clip_pytorch_model.bin"
    if repo:
        fetch = (f"  huggingface-cli download {repo} {filename}\n"
                 "  (into the HuggingFace cache: HF_HOME, default ~/.cache/huggingface)")
    else:
        url = (open_clip.get_pretrained_cfg(model, pretrained) or {}).get("url", "?")
        fetch = f"  {url}\n  (into open_clip's cache, ~/.cache/clip)"
    mode = "offline (CLIP_OFFLINE / HF_HUB_OFFLINE is set)" if _offline() else "the download failed"
    return FileNotFoundError(
        f"open_clip weights for {model} / {pretrained} are not available: {mode}.\n"
        f"Fetch them on a machine with network access:\n{fetch}\n"
        f"or set MODEL.BACKBONE.PRETRAINED to a checkpoint file holding them. ({err})"
    )


class OpenCLIP(nn.Module):
    """An open_clip ``CLIP`` seen through OpenAI CLIP's attribute names (the modules are shared)."""

    #: open_clip's transformer blocks take ``(N, L, width)`` (OpenAI's take ``(L, N, width)``).
    batch_first = True

    def __init__(self, model: nn.Module, model_name: str, pretrained: str, identity: str) -> None:
        super().__init__()
        open_clip = _open_clip()
        if not isinstance(model, open_clip.CLIP):
            raise NotImplementedError(
                f"open_clip:{model_name} is a {type(model).__name__} (its text tower is not CLIP's: "
                "SigLIP, EVA02 and other custom-text models); only the OpenAI-architecture family "
                "(open_clip.CLIP: ViT-B-16, ViT-L-14 with openai, LAION, DFN or MetaCLIP weights) runs here so far"
            )
        self.model_name = model_name
        self.pretrained = pretrained
        self.identity = identity
        self.visual = model.visual
        self.transformer = model.transformer
        self.token_embedding = model.token_embedding
        self.positional_embedding = model.positional_embedding
        self.ln_final = model.ln_final
        self.text_projection = model.text_projection
        self.logit_scale = model.logit_scale
        self.context_length = model.context_length
        self.text_pool_type = model.text_pool_type
        self.register_buffer("attn_mask", model.attn_mask, persistent=False)
        self.check_text_tower()
        self.check_vision_tower()

    # -- what the CLIP pieces read ----------------------------------------------------
    @property
    def dtype(self) -> torch.dtype:
        return self.visual.conv1.weight.dtype

    def build_attention_mask(self) -> torch.Tensor:
        return self.attn_mask.clone()

    def check_text_tower(self) -> None:
        """The text encoder cuts every sequence after its last EOT and reads the EOT's
        feature: exact only for a causal tower pooled at the EOT (the largest token id)."""
        if self.attn_mask is None or self.text_pool_type != "argmax":
            raise NotImplementedError(
                f"open_clip:{self.model_name}: text tower with pooling {self.text_pool_type!r} and "
                f"{'no causal mask' if self.attn_mask is None else 'a causal mask'}; the prompt learners need "
                "CLIP's causal tower pooled at the EOT token (argmax), as in the OpenAI-architecture models"
            )
        if self.context_length != 77 or self.token_embedding.num_embeddings != 49408:
            raise NotImplementedError(
                f"open_clip:{self.model_name}: context length {self.context_length} and vocabulary "
                f"{self.token_embedding.num_embeddings}; only CLIP's BPE tokenizer (77 tokens, 49408 ids) runs here so far"
            )

    def check_vision_tower(self) -> None:
        visual = self.visual
        open_clip = _open_clip()
        if not isinstance(visual, open_clip.transformer.VisionTransformer):
            return  # a ResNet / timm tower: runs as a whole, and refuses visual prompts (ImageEncoder)
        if visual.attn_pool is not None or visual.pool_type != "tok" or visual.final_ln_after_pool:
            raise NotImplementedError(
                f"open_clip:{self.model_name}: vision tower pooled by {visual.pool_type!r}"
                f"{' with attentional pooling' if visual.attn_pool is not None else ''}; the image encoder's "
                "stages (embed, blocks, pool) follow CLIP's class-token pooling"
            )

    @property
    def input_resolution(self) -> int:
        height, width = getattr(self.visual, "image_size", (0, 0))
        if height != width:
            raise NotImplementedError(f"open_clip:{self.model_name}: non-square input {height}x{width}")
        return int(height)

    def encode_image(self, image: torch.Tensor) -> torch.Tensor:
        return self.visual(image.to(self.dtype))

    def encode_text(self, text: torch.Tensor) -> torch.Tensor:
        x = self.token_embedding(text).to(self.dtype) + self.positional_embedding.to(self.dtype)
        x = self.transformer(x, attn_mask=self.attn_mask)
        x = self.ln_final(x)[torch.arange(x.shape[0]), text.argmax(dim=-1)]
        return project_text(x, self.text_projection)


def project_text(x: torch.Tensor, projection) -> torch.Tensor:
    """A text tower's projection: a matrix (OpenAI's CLIP) or a linear layer (``proj_bias``)."""
    if projection is None:
        return x
    if isinstance(projection, nn.Linear):
        return projection(x)
    return x @ projection


def file_identity(path: Path) -> str:
    stat = path.stat()
    return f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"


@contextlib.contextmanager
def _hub_offline(offline: bool) -> Iterator[None]:
    """HuggingFace Hub offline for the duration: a missing file then fails at once instead of
    after network time-outs. ``huggingface_hub`` reads ``HF_HUB_OFFLINE`` when imported, so its
    constant is set too."""
    if not offline:
        yield
        return
    import huggingface_hub.constants as hub_constants

    previous_env, previous_constant = os.environ.get("HF_HUB_OFFLINE"), hub_constants.HF_HUB_OFFLINE
    os.environ["HF_HUB_OFFLINE"], hub_constants.HF_HUB_OFFLINE = "1", True
    try:
        yield
    finally:
        hub_constants.HF_HUB_OFFLINE = previous_constant
        if previous_env is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = previous_env


def state_digest(module: nn.Module) -> str:
    """SHA-256 (16 hex digits) of a module's parameters and buffers: the identity of weights
    that exist only in memory (``random``)."""
    digest = hashlib.sha256()
    for key, tensor in sorted(module.state_dict().items()):
        digest.update(key.encode())
        digest.update(tensor.detach().cpu().reshape(-1).contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


def load_open_clip(name: str, pretrained: str, download: Optional[bool] = None) -> OpenCLIP:
    """The open_clip model ``name`` (``open_clip:<model | config.json>``) with ``pretrained`` weights,
    in float32 on the CPU, eval mode. ``download=None``: download unless offline.

    Its :attr:`OpenCLIP.identity` names the model config (the file's hash for a JSON), the
    weights (tag, hf-hub repo, a checkpoint file's path, size and time, or the digest of random
    weights) and so the tokenizer, for the caches keyed by the backbone.
    """
    open_clip = _open_clip()
    model_name = resolve_model_name(name)
    pretrained = str(pretrained or "").strip()
    if model_name.startswith(HF_HUB_PREFIX):
        pretrained = pretrained or model_name
    if not pretrained:
        raise _missing_pretrained_error(model_name)
    offline = (download is False) or (download is None and _offline())
    spec = name[len(OPEN_CLIP_PREFIX):] if is_open_clip_name(name) else name
    config_id = hashlib.sha256(Path(spec).expanduser().read_bytes()).hexdigest()[:16] if spec.endswith(".json") else model_name
    weights_file = Path(pretrained).expanduser()
    if pretrained == RANDOM_WEIGHTS:
        model = open_clip.create_model(model_name, pretrained=None)
        weights = f"random:{state_digest(model)}"
    elif weights_file.is_file():
        model = open_clip.create_model(model_name, pretrained=str(weights_file))
        weights = file_identity(weights_file)
    elif pretrained.startswith(("/", ".", "~")) or pretrained.endswith((".pt", ".pth", ".bin", ".safetensors")):
        raise FileNotFoundError(f"MODEL.BACKBONE.PRETRAINED={pretrained!r}: no such checkpoint file")
    else:
        if not pretrained.startswith(HF_HUB_PREFIX):
            tags = open_clip.list_pretrained_tags_by_model(model_name)
            if pretrained not in tags:
                raise ValueError(
                    f"MODEL.BACKBONE.PRETRAINED={pretrained!r} is neither a pretrained tag of open_clip:{model_name} "
                    f"(known: {', '.join(tags) or 'none'}) nor an existing checkpoint file"
                )
        try:
            with _hub_offline(offline):
                if pretrained.startswith(HF_HUB_PREFIX):
                    model = open_clip.create_model(pretrained)
                else:
                    model = open_clip.create_model(model_name, pretrained=pretrained, require_pretrained=True)
        except (OSError, RuntimeError, ValueError) as err:
            raise _weights_error(model_name, pretrained, err) from err
        weights = pretrained
    return OpenCLIP(model.float().eval(), model_name, pretrained, f"open_clip|{config_id}|{weights}")


def convert_openai_checkpoint(openai_checkpoint: Path | str, weights_out: Path | str, config_out: Path | str) -> None:
    """Write an OpenAI CLIP checkpoint (JIT or state dict) as open_clip weights plus the model
    config JSON that builds them, with open_clip's own converter (QuickGELU, as OpenAI trained)."""
    from .clip_loader import load_clip_state_dict

    open_clip = _open_clip()
    state = dict(load_clip_state_dict(openai_checkpoint))
    model = open_clip.model.build_model_from_openai_state_dict(dict(state), quick_gelu=True)
    visual, text = model.visual, model
    if not isinstance(visual, open_clip.transformer.VisionTransformer):
        raise NotImplementedError("convert_openai_checkpoint writes ViT models only")
    config = {
        "embed_dim": int(state["text_projection"].shape[1]),
        "quick_gelu": True,
        "vision_cfg": {
            "image_size": int(visual.image_size[0]),
            "layers": len(visual.transformer.resblocks),
            "width": int(visual.conv1.out_channels),
            "patch_size": int(visual.patch_size[0]),
        },
        "text_cfg": {
            "context_length": int(text.context_length),
            "vocab_size": int(text.vocab_size),
            "width": int(text.ln_final.weight.shape[0]),
            "heads": int(text.ln_final.weight.shape[0]) // 64,
            "layers": len(text.transformer.resblocks),
        },
    }
    Path(config_out).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    torch.save(model.state_dict(), weights_out)


__all__ = [
    "OPEN_CLIP_PREFIX",
    "OpenCLIP",
    "RANDOM_WEIGHTS",
    "convert_openai_checkpoint",
    "is_open_clip_name",
    "load_open_clip",
    "project_text",
    "state_digest",
    "resolve_model_name",
]
