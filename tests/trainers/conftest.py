"""Fixtures of the trainer tests: one tiny random CLIP per session, single-threaded torch."""
from __future__ import annotations

import warnings

import pytest
import torch

from tests.utils.tiny_clip import make_tiny_clip

warnings.filterwarnings("ignore", message="pkg_resources is deprecated")


@pytest.fixture(scope="session", autouse=True)
def _one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)  # the machine is shared: keep tests to one core
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def tiny_clip_path(tmp_path_factory) -> str:
    return str(make_tiny_clip(tmp_path_factory.mktemp("clip") / "tiny_vit.pt", image_resolution=32))


@pytest.fixture()
def tiny_clip(tiny_clip_path):
    """A fresh float32 CLIP built from the tiny checkpoint (as the trainers build it on CPU)."""
    from trainers.common.clip_loader import load_clip

    return load_clip(tiny_clip_path).float()


@pytest.fixture()
def count_text_encoder(monkeypatch):
    """Counts TextEncoder.forward calls (every text-tower pass goes through it): the list of
    the number of sequences each call encoded."""
    from trainers.common.text_encoder import TextEncoder

    calls = []
    original = TextEncoder.forward

    def counting(self, prompts, tokenized, deep_prompts=None):
        calls.append(prompts.shape[0])
        return original(self, prompts, tokenized, deep_prompts)

    monkeypatch.setattr(TextEncoder, "forward", counting)
    return calls


@pytest.fixture(scope="session")
def eurosat_root(tmp_path_factory) -> str:
    """A fabricated EuroSAT tree (10 classes, 6 images each)."""
    from tests.utils.fabricate import make_eurosat_tree

    return make_eurosat_tree(tmp_path_factory.mktemp("eurosat"), n_per_class=6)


@pytest.fixture(scope="session")
def three_block_clip_path(tmp_path_factory) -> str:
    """A tiny CLIP with 3 image blocks (room for deep visual prompts) and 2 text blocks."""
    return str(make_tiny_clip(tmp_path_factory.mktemp("clip3") / "tiny3.pt", vision_layers=3, text_layers=2))
