"""Tiny random-weight open_clip model configs, one per family, for tests (no network).

* ``tiny-last-token``: SigLIP-shaped: its text tower (``custom_text``, no causal mask, the last
  position pooled, projection bias, logit bias, 64 positions) and its vision tower, a timm ViT
  without class token pooled by attention (``map``), registered as ``vit_test_tiny_map``;
* ``tiny-eva``: EVA02-shaped, open_clip's causal text tower and a timm EVA vision tower
  (rotary position embeddings), registered with timm as ``eva02_test_tiny``;
* ``tiny-hf-text``: SigLIP 2-shaped, with a HuggingFace tokenizer of its own (no start
  token, an end token, ``canonicalize`` cleaning), written to a local folder by
  :func:`write_hf_tokenizer`: open_clip's ``HFTokenizer`` loads it as it loads SigLIP's.

Sizes fit the synthetic world's configs: 3 text blocks, 4 image blocks, width 64. (A
config's name must not contain "siglip": open_clip then picks SigLIP's HuggingFace
tokenizer, which needs a download.)
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict

TEXT = {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 1, "layers": 3}

CONFIGS: Dict[str, dict] = {
    "tiny-last-token": {
        "embed_dim": 64,
        "init_logit_bias": -10,
        "custom_text": True,
        "vision_cfg": {"image_size": 64, "timm_model_name": "vit_test_tiny_map", "timm_model_pretrained": False,
                       "timm_pool": "map", "timm_proj": "none"},
        "text_cfg": dict(TEXT, context_length=64, no_causal_mask=True, proj_bias=True, pool_type="last"),
    },
    "tiny-eva": {
        "embed_dim": 64,
        "custom_text": True,
        "vision_cfg": {"image_size": 56, "timm_model_name": "eva02_test_tiny", "timm_model_pretrained": False,
                       "timm_pool": "token", "timm_proj": "linear"},
        "text_cfg": TEXT,
    },
    "tiny-hf-text": {
        "embed_dim": 64,
        "init_logit_bias": -10,
        "custom_text": True,
        "vision_cfg": {"image_size": 64, "layers": 4, "width": 64, "patch_size": 8},
        "text_cfg": dict(TEXT, context_length=64, no_causal_mask=True, proj_bias=True, pool_type="last",
                         tokenizer_kwargs={"clean": "canonicalize"}),  # hf_tokenizer_name: write_config
    },
}


#: The tiny HuggingFace tokenizer's words (anything else is its unknown token, one per word).
HF_WORDS = ("a photo of an the x zorbel quintal flower dog cat small red round thing with stripes "
            "type texture shape colour pattern").split()


def write_hf_tokenizer(folder: Path) -> Path:
    """A word-level HuggingFace tokenizer in ``folder``: lower-cased words, ``</s>`` appended,
    ``<pad>`` padding, no start token (as SigLIP's)."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2}
    for word in HF_WORDS:
        vocab.setdefault("\u2581" + word, len(vocab))
    tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token="</s>", pad_token="<pad>", unk_token="<unk>")
    folder = Path(folder)
    fast.save_pretrained(str(folder))
    return folder


def register_tiny_timm_towers() -> None:
    """Register with timm ``eva02_test_tiny`` (EVA02's block design: SwiGLU, rotary embeddings;
    width 64, 4 blocks, 56 px input in 14 px patches) and ``vit_test_tiny_map`` (SigLIP's: no
    class token, attention pooling; width 64, 4 blocks, 64 px input in 8 px patches)."""
    from timm.models import is_model, register_model
    from timm.models.eva import _create_eva
    from timm.models.vision_transformer import _create_vision_transformer

    if is_model("eva02_test_tiny"):
        return

    @register_model
    def vit_test_tiny_map(pretrained: bool = False, **kwargs):
        args = dict(img_size=64, patch_size=8, embed_dim=64, depth=4, num_heads=1, class_token=False,
                    global_pool="map")
        return _create_vision_transformer("vit_base_patch16_siglip_224", pretrained=False, **dict(args, **kwargs))

    @register_model
    def eva02_test_tiny(pretrained: bool = False, **kwargs):
        args = dict(img_size=56, patch_size=14, embed_dim=64, depth=4, num_heads=1, mlp_ratio=4 * 2 / 3,
                    swiglu_mlp=True, use_rot_pos_emb=True, ref_feat_shape=(4, 4))
        return _create_eva("eva02_tiny_patch14_224", pretrained=False, **dict(args, **kwargs))


def write_config(folder: Path, name: str) -> Path:
    """Write the model config ``name`` as ``folder/<name>.json`` (timm's tiny EVA registered,
    the tiny HuggingFace tokenizer written beside it)."""
    register_tiny_timm_towers()
    config = json.loads(json.dumps(CONFIGS[name]))
    if name == "tiny-hf-text":
        tokenizer = write_hf_tokenizer(Path(folder) / "hf_tokenizer")
        config["text_cfg"]["hf_tokenizer_name"] = str(tokenizer)
        config["text_cfg"]["vocab_size"] = 3 + len(set(HF_WORDS))
    path = Path(folder) / f"{name}.json"
    path.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    return path
