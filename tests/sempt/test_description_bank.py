"""trainers.parts.description_bank: pooling of sentence embeddings and the per-backbone cache."""
import pytest
import torch
import torch.nn.functional as F

from trainers.parts.description_bank import SentenceEmbeddingCache, backbone_key, pool_descriptions


def test_pooling_with_and_without_renormalisation():
    features = torch.randn(5, 8, generator=torch.Generator().manual_seed(0))
    groups = torch.tensor([0, 0, 0, 1, 1])  # class 0: sentences 0-2, class 1: sentences 3-4
    unit = F.normalize(features, dim=-1)
    means = torch.stack([unit[:3].mean(0), unit[3:].mean(0)])
    plain = pool_descriptions(features, groups, n_cls=2, n_attr=1, renormalize=False)
    pooled = pool_descriptions(features, groups, n_cls=2, n_attr=1)
    assert torch.allclose(plain[:, 0], means, atol=1e-6)
    assert (plain[:, 0].norm(dim=-1) < 1).all()  # disagreeing sentences: a shorter mean
    assert torch.allclose(pooled[:, 0], F.normalize(means, dim=-1), atol=1e-6)


def test_cache_for_a_backbone_is_keyed_by_file_and_dtype(tiny_clip_path, tmp_path, monkeypatch):
    from pathlib import Path

    cache = SentenceEmbeddingCache.for_backbone(tiny_clip_path, torch.float32, tmp_path)
    assert cache.path == tmp_path / f"{backbone_key(tiny_clip_path, Path(tiny_clip_path), torch.float32)}.pt"
    half = SentenceEmbeddingCache.for_backbone(tiny_clip_path, torch.float16, tmp_path)
    assert half.path != cache.path
    monkeypatch.setenv("SEMPT_CACHE_DIR", str(tmp_path / "env"))
    default = SentenceEmbeddingCache.for_backbone(tiny_clip_path, torch.float32)
    assert default.path == tmp_path / "env" / "descriptions" / cache.path.name


def test_cache_for_an_unknown_backbone_names_it(tmp_path):
    with pytest.raises(Exception, match="ViT-B/99"):
        SentenceEmbeddingCache.for_backbone("ViT-B/99", torch.float32, tmp_path)


def test_the_cache_is_keyed_by_the_precision_mode_not_only_its_dtype(tiny_clip_path, tmp_path):
    from trainers.common.precision import resolve_precision

    amp, fp16 = (resolve_precision(p, "cpu", on_cpu=True) for p in ("amp", "fp16"))
    assert amp.compute_dtype == fp16.compute_dtype == torch.float16  # alike by dtype, not by numbers
    paths = {SentenceEmbeddingCache.for_backbone(tiny_clip_path, p.compute_dtype, tmp_path, variant=p.cache_variant()).path
             for p in (amp, fp16)}
    assert len(paths) == 2
