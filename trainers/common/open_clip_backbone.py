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

Text towers: open_clip's own (``CLIP``, and ``CustomTextCLIP`` with a ``TextTransformer``:
SigLIP's non-causal, last-token one, EVA02's causal one), with the model's tokenizer;
HuggingFace text encoders and CoCa's class-token towers are refused, naming the backbone.
Vision towers: open_clip's class-token ``VisionTransformer`` takes visual prompts (the
stages of ``ImageEncoder``); others (timm towers, ResNets) run whole and refuse prompts.
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

from .cache_identity import file_identity
from .text_spec import POOLINGS, TextSpec

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
    """An open_clip ``CLIP`` or ``CustomTextCLIP`` seen through OpenAI CLIP's attribute names
    (the modules are shared), with the :class:`~trainers.common.text_spec.TextSpec` of its
    text side and the model's own tokenizer."""

    #: open_clip's transformer blocks take ``(N, L, width)`` (OpenAI's take ``(L, N, width)``).
    batch_first = True

    def __init__(self, model: nn.Module, model_name: str, pretrained: str, identity: str,
                 config_file: Optional[Path] = None) -> None:
        super().__init__()
        open_clip = _open_clip()
        self.model_name = model_name
        self.config_file = config_file
        self.pretrained = pretrained
        self.identity = identity
        text = model.text if isinstance(model, open_clip.CustomTextCLIP) else model
        if not isinstance(text, (open_clip.CLIP, open_clip.transformer.TextTransformer)):
            raise NotImplementedError(
                f"open_clip:{model_name}: its text tower is a {type(text).__name__}; prompt learning reaches "
                "into open_clip's own TextTransformer only (not HuggingFace text encoders)"
            )
        if getattr(text, "cls_emb", None) is not None or getattr(text, "use_pad_mask", False):
            raise NotImplementedError(
                f"open_clip:{model_name}: a text tower with a class token or a padding mask (CoCa-style) "
                "is not supported by the prompt learners"
            )
        self.visual = model.visual
        if not hasattr(self.visual, "output_dim"):
            # A timm tower does not say its output width (OpenAI's towers do); it is the text features' width.
            self.visual.output_dim = projected_width(text.text_projection, text.ln_final.weight.shape[0])
        self.transformer = text.transformer
        self.token_embedding = text.token_embedding
        self.positional_embedding = text.positional_embedding
        self.ln_final = text.ln_final
        self.text_projection = text.text_projection
        self.logit_scale = model.logit_scale
        # SigLIP's learnt bias of its sigmoid scores: a constant shift of every class's logit,
        # which a softmax over classes (and so cross-entropy and accuracy) ignores.
        self.logit_bias = getattr(model, "logit_bias", None)
        self.context_length = text.context_length
        self.text_pool_type = text.text_pool_type if text is model else text.pool_type
        self.register_buffer("attn_mask", text.attn_mask, persistent=False)
        # open_clip's own forwards, over the same modules: the reference the encoders are tested against.
        self.open_clip_encode_text = model.encode_text
        self.open_clip_encode_image = model.encode_image
        self.text_spec = self._describe_text(open_clip, getattr(text, "text_eos_id", getattr(text, "eos_id", None)))
        self.check_vision_tower()

    def _describe_text(self, open_clip, eos_id: Optional[int]) -> TextSpec:
        """The :class:`TextSpec` of this model, from its tokenizer and text tower."""
        if self.text_pool_type not in POOLINGS:
            raise NotImplementedError(
                f"open_clip:{self.model_name}: text pooling {self.text_pool_type!r}; prompt learners need "
                f"one sentence feature ({', '.join(POOLINGS)})"
            )
        tokenizer = self._tokenizer(open_clip)
        if tokenizer.context_length != self.context_length:
            raise ValueError(
                f"open_clip:{self.model_name}: the tokenizer writes {tokenizer.context_length} tokens, "
                f"the text tower reads {self.context_length}"
            )
        if hasattr(tokenizer, "encode"):  # open_clip's BPE (SimpleTokenizer): cleans as it encodes
            count = lambda text: len(tokenizer.encode(text))  # noqa: E731
            n_special = 2  # its start and end tokens
        else:  # a HuggingFace tokenizer behind open_clip's HFTokenizer
            hf = tokenizer.tokenizer
            count = lambda text: len(hf.encode(tokenizer.clean_fn(text), add_special_tokens=False))  # noqa: E731
            n_special = len(hf.encode("a")) - len(hf.encode("a", add_special_tokens=False))
        probe = tokenizer(["a", "b"])
        # A start token is the same whatever the text (CLIP's SOT); a first word is not.
        n_prefix = 1 if probe[0, 0] == probe[1, 0] else 0
        return TextSpec(
            tokenizer=lambda texts: tokenizer(list(texts)),
            count_tokens=count,
            context_length=self.context_length,
            n_prefix=n_prefix,
            pooling=self.text_pool_type,
            causal=self.attn_mask is not None,
            eos_id=eos_id,
            name=f"open_clip:{self.model_name}",
            max_tokens=self.context_length - n_special,
        )

    def _tokenizer(self, open_clip):
        """The model's tokenizer: open_clip's for a named model; for a model config file, the one
        the file names (``text_cfg.hf_tokenizer_name``), else CLIP's BPE, never one guessed from
        the file's name (open_clip picks SigLIP's, a download, for any name containing "siglip")."""
        if self.config_file is None:
            return open_clip.get_tokenizer(self.model_name)
        text = json.loads(self.config_file.read_text(encoding="utf-8")).get("text_cfg", {})
        if text.get("hf_tokenizer_name"):
            return open_clip.get_tokenizer(self.model_name)
        return open_clip.tokenizer.SimpleTokenizer(context_length=text.get("context_length", 77),
                                                   **text.get("tokenizer_kwargs", {}))

    # -- what the CLIP pieces read ----------------------------------------------------
    @property
    def dtype(self) -> torch.dtype:
        for param in self.visual.parameters():
            if param.is_floating_point():
                return param.dtype
        return self.token_embedding.weight.dtype

    def build_attention_mask(self) -> Optional[torch.Tensor]:
        return None if self.attn_mask is None else self.attn_mask.clone()

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
        if not isinstance(visual.patch_dropout, nn.Identity):
            raise NotImplementedError(f"open_clip:{self.model_name}: patch dropout is not supported; build it without")

    @property
    def input_resolution(self) -> int:
        size = getattr(self.visual, "image_size", None) or self.visual.preprocess_cfg["size"]
        height, width = (size, size) if isinstance(size, int) else tuple(size)
        if height != width:
            raise NotImplementedError(f"open_clip:{self.model_name}: non-square input {height}x{width}")
        return int(height)

    @property
    def pixel_normalization(self) -> Optional[tuple]:
        """``(mean, std)`` the model was trained with (open_clip's preprocess config), if known."""
        preprocess = getattr(self.visual, "preprocess_cfg", None) or {}
        if "mean" not in preprocess or "std" not in preprocess:
            return None
        return tuple(float(v) for v in preprocess["mean"]), tuple(float(v) for v in preprocess["std"])

    def encode_image(self, image: torch.Tensor) -> torch.Tensor:
        return self.open_clip_encode_image(image.to(self.dtype))

    def encode_text(self, text: torch.Tensor) -> torch.Tensor:
        return self.open_clip_encode_text(text)


def project_text(x: torch.Tensor, projection) -> torch.Tensor:
    """A text tower's projection: a matrix (OpenAI's CLIP) or a linear layer (``proj_bias``)."""
    if projection is None:
        return x
    if isinstance(projection, nn.Linear):
        return projection(x)
    return x @ projection


def projected_width(projection, width: int) -> int:
    """Width of features after a text projection (``None``: the tower's own ``width``)."""
    if projection is None:
        return width
    return projection.out_features if isinstance(projection, nn.Linear) else projection.shape[1]


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
    config_file = Path(spec).expanduser() if spec.endswith(".json") else None
    return OpenCLIP(model.float().eval(), model_name, pretrained, f"open_clip|{config_id}|{weights}", config_file)


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
