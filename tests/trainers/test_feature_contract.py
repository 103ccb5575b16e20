"""The feature cache's contract: batches carry their items' identities (``ImageBatch``,
dassl/data/batch.py) and trainers pass on what they received; nothing depends on which
tensor object a batch is, and no pass hands a method a placeholder.

1. ``ImageBatch``: what it refuses, and the error when a pass that read no image is asked
   for pixels.
2. A trainer whose ``parse_batch_*`` is written as upstream Dassl's, with no cache call,
   still gets its features from the cache (hits counted, nothing computed) and ends
   bit-identical to CoOp.
3. Images without identities are computed, never served, whatever the table holds.
4. Raw and normalised features served from the cache equal the uncached computation exactly.
"""
from __future__ import annotations

import re

import pytest
import torch
import torch.nn.functional as F

import train
from dassl.data.batch import ImageBatch, collate_items
from dassl.engine import TRAINER_REGISTRY
from tests.trainers.test_feature_cache import (  # noqa: F401  (the fixture is used by its name)
    Method,
    _private_caches_and_no_env_report,
    assert_same_checkpoints,
    cache_line,
    keys,
    run,
)
from trainers.common.feature_cache import attach_feature_server
from trainers.common.model import FixedTextCLIP, PromptCLIP
from trainers.common.precision import resolve_precision
from trainers.common.prompt_learner import PromptLearner
from trainers.coop import CoOp

GROUP = "Toy/eval"


# ------------------------------------------------------------------------ 1. ImageBatch
def test_an_image_batch_refuses_what_does_not_describe_its_items():
    with pytest.raises(ValueError, match="needs its pixels, its item keys, or both"):
        ImageBatch()
    with pytest.raises(ValueError, match="keys and their group come together"):
        ImageBatch(torch.zeros(2, 3, 4, 4), keys(2))
    with pytest.raises(ValueError, match="3 item keys for 2 images"):
        ImageBatch(torch.zeros(2, 3, 4, 4), keys(3), GROUP)
    with pytest.raises(ValueError, match="belong to one group"):
        collate_items([{"sample_key": k, "sample_group": g, "label": 0} for k, g in zip(keys(2), ["a/eval", "b/eval"])])
    images = ImageBatch(None, keys(2), GROUP)
    with pytest.raises(AttributeError, match="immutable"):
        images.keys = keys(2, 5)
    with pytest.raises(RuntimeError, match=r"2 items of Toy/eval\) were not read.*FEATURE_CACHE.ENABLED False"):
        images.pixels


def test_a_batch_that_read_no_image_names_its_items():
    items = [{"sample_key": k, "sample_group": GROUP, "label": i} for i, k in enumerate(keys(3))]
    batch = collate_items(items)
    images = ImageBatch.from_batch(batch)
    assert images is batch["img"] and images.keys == tuple(keys(3)) and images.group == GROUP
    assert not images.has_pixels and len(images.to("cpu")) == 3
    read = collate_items([dict(item, img=torch.full((3, 4, 4), float(i))) for i, item in enumerate(items)])
    images = ImageBatch.from_batch(read)
    assert images.keys == tuple(keys(3)) and torch.equal(images.pixels, read["img"])
    assert not ImageBatch.from_batch({"img": read["img"]}).identified  # a plain batch: pixels only


# -------------------------------------------------- 2. parse_batch_* written as upstream's
@TRAINER_REGISTRY.register()
class CoOpUpstreamParsing(CoOp):
    """CoOp whose batch parsing is upstream Dassl's, knowing nothing of any cache."""

    def parse_batch_train(self, batch):
        return batch["img"].to(self.device), batch["label"].to(self.device)

    def parse_batch_test(self, batch):
        return batch["img"].to(self.device), batch["label"].to(self.device)


def test_a_trainer_overriding_batch_parsing_still_gets_cached_features(synthetic_data_root, tmp_path):
    cache = tmp_path / "features"
    coop = run(Method("CoOp", "CoOp", False), synthetic_data_root, tmp_path / "coop", cache)
    assert re.search(r"training 0 hits, [1-9]\d* misses", cache_line(coop))  # CoOp computed them
    log = run(Method("CoOpUpstreamParsing", "CoOp", False), synthetic_data_root, tmp_path / "override", cache)
    assert re.search(r"training [1-9]\d* hits, 0 misses; evaluation [1-9]\d* hits, 0 misses", cache_line(log))
    assert_same_checkpoints(tmp_path / "coop", tmp_path / "override")


# ---------------------------------------------------------- 3. no identity, no serving
@pytest.fixture
def frozen_model(tiny_clip):
    model = FixedTextCLIP(tiny_clip, torch.zeros(2, tiny_clip.visual.output_dim))
    model.requires_grad_(False)
    return model


def attach(model, cache_dir, enabled=True):
    opts = ["FEATURE_CACHE.DIR", str(cache_dir), "FEATURE_CACHE.CHUNK", "4", "FEATURE_CACHE.ENABLED", str(enabled)]
    cfg = train.setup_cfg(train.build_parser().parse_args(opts))
    server, reason = attach_feature_server(model, cfg, resolve_precision("fp32", "cpu"), torch.device("cpu"), "tiny")
    assert server is not None, reason
    return server


def test_images_without_identities_are_computed_never_served(frozen_model, tmp_path):
    server = attach(frozen_model, tmp_path)
    first, second = torch.randn(2, 3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    served = frozen_model.encode_image(ImageBatch(first, keys(3), GROUP))
    before = server.stats()
    for images in (second, ImageBatch(second)):  # the table holds features of 3 items of this size
        got = frozen_model.encode_image(images)
        assert torch.equal(got, F.normalize(server.compute(second), dim=-1))
        assert not torch.equal(got, served)
    assert server.stats() == before  # computed, not looked up: neither a hit nor a miss


# ------------------------------------------------------------ 4. raw and normalised
def test_raw_and_normalised_features_from_the_cache_equal_the_uncached_ones(tiny_clip, frozen_model, tmp_path):
    images = torch.randn(5, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    cold = attach(frozen_model, tmp_path)
    cold_raw = frozen_model.encode_image(ImageBatch(images, keys(5), GROUP), normalize=False)
    cold.end_pass(GROUP)  # written to disk

    attach(frozen_model, tmp_path, enabled=False)
    uncached_raw = frozen_model.encode_image(images, normalize=False)
    uncached = frozen_model.encode_image(images)

    warm = attach(frozen_model, tmp_path)
    unread = ImageBatch(None, keys(5), GROUP)  # no pixels: only the cache can answer
    served_raw, served = frozen_model.encode_image(unread, normalize=False), frozen_model.encode_image(unread)
    assert warm.stats()["evaluation"] == {"hits": 10, "misses": 0}
    assert torch.equal(cold_raw, uncached_raw) and torch.equal(served_raw, uncached_raw)
    assert torch.equal(served, uncached) and torch.equal(served, F.normalize(served_raw, dim=-1))
    assert not torch.allclose(served_raw.norm(dim=-1), torch.ones(5))  # raw really is unnormalised

    # A prompt model with a frozen image tower serves the same raw features.
    learner = PromptLearner(["a", "b"], tiny_clip, n_ctx=2, verbose=False)
    prompt_model = PromptCLIP(tiny_clip, learner)
    prompt_model.requires_grad_(False)
    attach(prompt_model, tmp_path)
    assert torch.equal(prompt_model.encode_image(unread, normalize=False), uncached_raw)
    assert torch.equal(prompt_model.encode_image(unread), uncached)
