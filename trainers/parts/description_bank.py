"""Description embeddings ``e_ck``: encoded once per (backbone, text) and cached on disk.

``e_ck = normalize(mean_j normalize(E_T(s_ckj)))`` over the sentences ``s_ckj`` of
class ``c`` and attribute ``k``. With the frozen text encoder these never change, so
each sentence is encoded once per backbone and precision and kept in a small cache
file keyed by the sentence's hash: changing one sentence re-encodes that sentence
only; a new backbone file (path, size or modification time) gets its own cache.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from dassl.utils.atomic_io import atomic_write

from ..common.cache_identity import PROJECT_CACHE_ENV as CACHE_ENV
from ..common.cache_identity import backbone_key, project_cache_dir
from ..common.clip_loader import backbone_identity
from ..common.text_encoder import TextEncoder


def default_cache_dir() -> Path:
    """``$SEMPT_CACHE_DIR/descriptions`` or ``~/.cache/sempt/descriptions``."""
    return project_cache_dir() / "descriptions"


def _sentence_key(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


class SentenceEmbeddingCache:
    """``{sentence hash: fp32 embedding}`` for one backbone, in ``<dir>/<key>.pt``."""

    def __init__(self, directory: Path, key: str) -> None:
        self.path = Path(directory) / f"{key}.pt"
        self.entries: Dict[str, torch.Tensor] = {}
        self.writable = True  # False after a failed save: warn once, then only keep them in memory
        if self.path.is_file():
            try:
                state = torch.load(self.path, map_location="cpu", weights_only=True)
                self.entries = dict(zip(state["keys"], state["embeddings"].unbind(0)))
            except Exception as err:  # a damaged cache is rebuilt, never trusted
                print(f"Ignoring unreadable description cache {self.path} ({err})")

    @classmethod
    def for_backbone(
        cls, backbone: str, dtype: torch.dtype, directory: str | Path = "", clip_model: Optional[nn.Module] = None,
        variant: str = "",
    ) -> "SentenceEmbeddingCache":
        """The cache of the text encoder of ``MODEL.BACKBONE.NAME`` ``backbone`` run at ``dtype``,
        in ``directory`` (empty: :func:`default_cache_dir`); ``clip_model``, the loaded model,
        identifies an open_clip backbone; ``variant`` what else the embeddings depend on (the
        precision mode and device: amp and fp16 both compute in float16, not alike)."""
        key = backbone_key(backbone, backbone_identity(backbone, clip_model), dtype, variant)
        return cls(Path(directory) if directory else default_cache_dir(), key)

    def lookup(self, texts: Sequence[str]) -> Tuple[List[int], List[str]]:
        """Indices and texts of the sentences not cached yet."""
        missing = [(i, t) for i, t in enumerate(texts) if _sentence_key(t) not in self.entries]
        return [i for i, _ in missing], [t for _, t in missing]

    def add(self, texts: Sequence[str], embeddings: torch.Tensor) -> None:
        for text, emb in zip(texts, embeddings.detach().float().cpu()):
            self.entries[_sentence_key(text)] = emb.clone()

    def get(self, texts: Sequence[str]) -> torch.Tensor:
        return torch.stack([self.entries[_sentence_key(t)] for t in texts])

    def save(self) -> None:
        """Atomic write (temp file + rename): concurrent runs never see a partial file.

        A cache that cannot be written (a full or read-only disk) is not an error: the run
        goes on with the embeddings in memory, after one warning.
        """
        if not self.writable:
            return
        keys = list(self.entries)
        state = {"keys": keys, "embeddings": torch.stack([self.entries[k] for k in keys])}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(str(self.path), lambda f: torch.save(state, f))
        except OSError as err:
            self.writable = False
            print(f"Warning: cannot write the description cache {self.path} ({err}); this run goes on "
                  f"without saving it (to keep the embeddings, free space or set DESC_CACHE_DIR of the method's "
                  f"config node, or ${CACHE_ENV}, to a writable folder)")


def flatten_descriptions(sentences: Sequence[Sequence[Sequence[str]]]) -> Tuple[List[str], torch.Tensor]:
    """``[class][attribute][j]`` sentences -> flat list and the ``(class, attribute)`` group of each."""
    texts, groups = [], []
    n_attr = len(sentences[0]) if sentences else 0
    for c, per_class in enumerate(sentences):
        if len(per_class) != n_attr:
            raise ValueError(f"class {c} has {len(per_class)} attributes, expected {n_attr}")
        for k, per_attr in enumerate(per_class):
            for text in per_attr:
                texts.append(text)
                groups.append(c * n_attr + k)
    return texts, torch.tensor(groups, dtype=torch.long)


def pool_descriptions(
    sentence_features: torch.Tensor, groups: torch.Tensor, n_cls: int, n_attr: int, renormalize: bool = True
) -> torch.Tensor:
    """``e_ck = normalize(mean_j normalize(feature_ckj))`` -> ``(n_cls, n_attr, dim)``.

    ``renormalize=False`` keeps the mean of the unit sentence embeddings as it is (shorter
    the more the sentences disagree): a dot product with it is the mean of the sentences'
    cosine similarities, DCLIP's class score.
    """
    feats = F.normalize(sentence_features.float(), dim=-1)
    groups = groups.to(feats.device)
    summed = torch.zeros(n_cls * n_attr, feats.shape[-1], device=feats.device, dtype=feats.dtype)
    summed = summed.index_add(0, groups, feats)
    counts = torch.bincount(groups, minlength=n_cls * n_attr).clamp_min(1).unsqueeze(-1)
    mean = summed / counts
    return (F.normalize(mean, dim=-1) if renormalize else mean).view(n_cls, n_attr, -1)


@torch.no_grad()
def encode_descriptions(
    text_encoder: TextEncoder,
    sentences: Sequence[Sequence[Sequence[str]]],
    cache: SentenceEmbeddingCache | None = None,
    renormalize: bool = True,
) -> torch.Tensor:
    """Frozen description embeddings ``(n_cls, n_attr, dim)``, fp32, normalised
    (``renormalize=False``: the plain mean of the unit sentence embeddings, see
    :func:`pool_descriptions`).

    Sentences already in ``cache`` are not encoded again; new ones are added and
    the cache is saved.
    """
    texts, groups = flatten_descriptions(sentences)
    text_encoder.tokenize(texts)  # fail early, naming the sentence, if one does not fit the context
    if cache is None:
        features = text_encoder.encode_text(texts).float().cpu()
    else:
        _, missing = cache.lookup(texts)
        if missing:
            print(f"Encoding {len(missing)} description sentence(s) ({len(texts) - len(missing)} cached)")
            cache.add(missing, text_encoder.encode_text(missing))
            cache.save()
        else:
            print(f"All {len(texts)} description sentences found in the cache {cache.path}")
        features = cache.get(texts)
    return pool_descriptions(features, groups, len(sentences), len(sentences[0]), renormalize)


__all__ = [
    "CACHE_ENV",
    "default_cache_dir",
    "backbone_key",
    "SentenceEmbeddingCache",
    "flatten_descriptions",
    "pool_descriptions",
    "encode_descriptions",
]
