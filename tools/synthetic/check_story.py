"""Check that the tiny CLIP is a fair miniature of real CLIP on rare categories.

Zero-shot accuracy, separately on the base and on the novel half of the world's classes
(20-way each, as in base-to-novel evaluation), of

- ``name``: the prompt "a photo of a <name>." (what CoOp starts from);
- ``attributes``: the mean of the class's description-sentence embeddings from
  ``attribute_data/synthetic.json`` (all attributes, the invisible ones included);
- ``visible``: the same with the visible attributes only.

The calibrated story (datasets/SYNTHETIC.md): ``name`` at least 35 on each half (names are
grounded) and ``attributes`` a few points above it (-2 to +6), as LLM descriptions are on
real CLIP. Images come from their own random stream, never from the dataset's splits.

    python -m tools.synthetic.check_story pretrained/tiny_clip_synthetic.pt
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from trainers.common.openai_clip import clip  # noqa: E402

from tools.synthetic import world as sw  # noqa: E402
from tools.synthetic.attribute_file import build_attribute_data  # noqa: E402
from tools.synthetic.clip_input import images_to_tensor  # noqa: E402
from tools.synthetic.render import render_object  # noqa: E402


def load_checkpoint(path: str) -> clip.model.CLIP:
    """Load as the trainers do: ``build_model`` on the state dict, then fp32."""
    state = torch.load(path, map_location="cpu")
    return clip.model.build_model(state).float().eval()


@torch.no_grad()
def encode_texts(model: clip.model.CLIP, texts: List[str]) -> torch.Tensor:
    return F.normalize(model.encode_text(clip.tokenize(texts)).float(), dim=-1)


@torch.no_grad()
def story_report(model: clip.model.CLIP, world: Optional[sw.World] = None, per_class: int = 25) -> Dict[str, float]:
    world = world or sw.build_world()
    attr_data = build_attribute_data(world)
    images, labels = [], []
    for c in world.classes:
        rng = np.random.default_rng([sw.WORLD_VERSION, world.seed, 4, c.label])
        for _ in range(per_class):
            images.append(render_object(*c.visible, rng))
            labels.append(c.label)
    feats = []
    for i in range(0, len(images), 200):
        feats.append(F.normalize(model.encode_image(images_to_tensor(images[i:i + 200])).float(), dim=-1))
    img = torch.cat(feats)
    labels_t = torch.tensor(labels)

    def class_embeddings(visible_only: bool) -> torch.Tensor:
        out = []
        for entry in attr_data["classes"]:
            sents = [s for a, ss in entry["descriptions"].items()
                     if not visible_only or a in sw.VISIBLE_ATTRIBUTES for s in ss]
            out.append(F.normalize(encode_texts(model, sents).mean(0), dim=-1))
        return torch.stack(out)

    heads = {
        "name": encode_texts(model, [f"a photo of a {c.name}." for c in world.classes]),
        "attributes": class_embeddings(False),
        "visible": class_embeddings(True),
    }
    report: Dict[str, float] = {}
    for half, members in (("base", world.base), ("novel", world.novel)):
        idx = torch.tensor([c.label for c in members])
        sel = torch.isin(labels_t, idx)
        for head, emb in heads.items():
            pred = idx[(img[sel] @ emb[idx].t()).argmax(1)]
            report[f"{head}/{half}"] = (pred == labels_t[sel]).float().mean().item() * 100
    return report


def print_report(report: Dict[str, float]) -> None:
    print("zero-shot accuracy (%), 20-way per half, chance 5.0")
    print(f"{'head':<12}{'base':>8}{'novel':>8}")
    for head in ("name", "attributes", "visible"):
        print(f"{head:<12}{report[head + '/base']:>8.1f}{report[head + '/novel']:>8.1f}")


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description="Zero-shot story check of a tiny CLIP checkpoint.")
    parser.add_argument("checkpoint", nargs="?", default="pretrained/tiny_clip_synthetic.pt")
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    print_report(story_report(load_checkpoint(args.checkpoint)))


if __name__ == "__main__":
    main()
