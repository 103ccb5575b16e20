"""Tiny random-weight open_clip model configs, one per family, for tests (no network).

* ``tiny-last-token``: SigLIP-shaped text tower (``custom_text``, no causal mask, the last
  position pooled, projection bias, logit bias, 64 positions) on an open_clip ViT;
* ``tiny-eva``: EVA02-shaped, open_clip's causal text tower and a timm EVA vision tower
  (rotary position embeddings), registered with timm as ``eva02_test_tiny``.

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
        "vision_cfg": {"image_size": 64, "layers": 4, "width": 64, "patch_size": 8},
        "text_cfg": dict(TEXT, context_length=64, no_causal_mask=True, proj_bias=True, pool_type="last"),
    },
    "tiny-eva": {
        "embed_dim": 64,
        "custom_text": True,
        "vision_cfg": {"image_size": 56, "timm_model_name": "eva02_test_tiny", "timm_model_pretrained": False,
                       "timm_pool": "token", "timm_proj": "linear"},
        "text_cfg": TEXT,
    },
}


def register_tiny_eva() -> None:
    """Register ``eva02_test_tiny`` with timm: EVA02's block design (SwiGLU, rotary embeddings)
    at width 64, 4 blocks, 56 px input in 14 px patches."""
    from timm.models import is_model, register_model
    from timm.models.eva import _create_eva

    if is_model("eva02_test_tiny"):
        return

    @register_model
    def eva02_test_tiny(pretrained: bool = False, **kwargs):
        args = dict(img_size=56, patch_size=14, embed_dim=64, depth=4, num_heads=1, mlp_ratio=4 * 2 / 3,
                    swiglu_mlp=True, use_rot_pos_emb=True, ref_feat_shape=(4, 4))
        return _create_eva("eva02_tiny_patch14_224", pretrained=False, **dict(args, **kwargs))


def write_config(folder: Path, name: str) -> Path:
    """Write the model config ``name`` as ``folder/<name>.json`` (timm's tiny EVA registered)."""
    register_tiny_eva()
    path = Path(folder) / f"{name}.json"
    path.write_text(json.dumps(CONFIGS[name], indent=2) + "\n", encoding="utf-8")
    return path
