"""The shipped tiny CLIP checkpoint and the pieces of its pretraining script."""
from __future__ import annotations

import os
import re

import pytest
import torch
import torch.nn.functional as F

from trainers.common.openai_clip import clip
from tools.synthetic import world as sw
from tools.synthetic import pretrain_tiny_clip as pt

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CHECKPOINT = os.path.join(REPO_ROOT, "pretrained", "tiny_clip_synthetic.pt")
README = os.path.join(REPO_ROOT, "pretrained", "README.md")


def test_checkpoint_sha256_matches_readme():
    with open(README) as f:
        recorded = re.findall(r"sha256[^0-9a-f]*([0-9a-f]{64})", f.read())
    assert recorded, "pretrained/README.md must record the checkpoint's sha256"
    assert pt.sha256_of(CHECKPOINT) == recorded[0]


def test_checkpoint_loads_with_build_model():
    assert os.path.getsize(CHECKPOINT) <= 10 * 2**20
    state = torch.load(CHECKPOINT, map_location="cpu")
    assert isinstance(state, dict) and all(isinstance(v, torch.Tensor) for v in state.values())
    model = clip.model.build_model(state).float().eval()
    assert model.visual.input_resolution == 64
    assert model.vocab_size == 49408 and model.context_length == 77
    with torch.no_grad():
        img = model.encode_image(torch.zeros(2, 3, 64, 64))
        txt = model.encode_text(clip.tokenize(["a photo of a vorlick.", "a red round thing."]))
    assert img.shape == txt.shape == (2, pt.ARCH["embed_dim"])
    assert torch.isfinite(img).all() and torch.isfinite(txt).all()


def test_short_text_encoding_is_exact():
    model = pt.build_tiny_clip(0).eval()
    tokens = clip.tokenize(["a photo of a vorlick.", "a big, dotted and hexagonal object."])
    with torch.no_grad():
        full = model.encode_text(tokens)
        short = pt.encode_text_short(model, tokens[:, :16])
    assert torch.allclose(full, short, atol=1e-5)


def test_multi_positive_loss_reduces_to_clip_loss():
    torch.manual_seed(0)
    img, txt = torch.randn(6, 8), torch.randn(6, 8)
    scale = torch.tensor(10.0)
    logits = scale * F.normalize(img, dim=-1) @ F.normalize(txt, dim=-1).t()
    target = torch.arange(6)
    clip_loss = (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target)) / 2
    assert torch.allclose(pt.multi_positive_loss(img, txt, scale, torch.eye(6)), clip_loss)
    # An extra true pair changes the targets.
    pos = torch.eye(6)
    pos[0, 1] = 1
    assert not torch.allclose(pt.multi_positive_loss(img, txt, scale, pos), clip_loss)


def test_pair_sampler_positives_are_consistent():
    sampler = pt.PairSampler(sw.build_world(), seed=0, pool_size=32)
    images, tokens, pos = sampler.sample(16)
    assert images.shape == (16, 3, 64, 64) and tokens.shape[0] == 16
    assert torch.all(pos.diagonal() == 1)  # every caption is true of its own image
    again = pt.PairSampler(sw.build_world(), seed=0, pool_size=32).sample(16)
    assert torch.equal(images, again[0]) and torch.equal(tokens, again[1])


def test_export_keeps_vectors_fp32_and_halves_matrices():
    state = pt.export_state_dict(pt.build_tiny_clip(0))
    assert state["token_embedding.weight"].dtype == torch.float16
    assert state["ln_final.weight"].dtype == torch.float32
    clip.model.build_model(dict(state))  # loads as an OpenAI checkpoint would


@pytest.mark.slow
def test_story_holds_for_the_shipped_checkpoint():
    from tools.synthetic.check_story import load_checkpoint, story_report

    r = story_report(load_checkpoint(CHECKPOINT))
    for half in ("base", "novel"):
        # The calibration (datasets/SYNTHETIC.md), on fresh images: names are grounded (target 1)
        # and averaged descriptions add a few points, as LLM descriptions do (target 5).
        assert r[f"name/{half}"] >= 35.0, r
        assert -2.0 <= r[f"attributes/{half}"] - r[f"name/{half}"] <= 6.0, r
