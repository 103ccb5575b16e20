"""Pretrain the synthetic world's tiny CLIP (``pretrained/tiny_clip_synthetic.pt``).

The model is the real ``clip.model.CLIP`` (ViT image encoder, 64 px input, patch 8; text
transformer of width 64 with the real 49408-token BPE vocabulary), only small. It is trained
contrastively on freshly rendered image-caption pairs covering ALL attribute combinations of
the world, not only its 40 classes. Captions describe a random subset of the visible
attributes in varied wording; the class name appears only in a minority of the captions of a
class's combination. So, as real CLIP on rare categories, the model knows attributes well and
the invented names only weakly (see ``tools/synthetic/check_story.py``).

Run from the repository root (about 6 minutes on one core)::

    python -m tools.synthetic.pretrain_tiny_clip --out pretrained/tiny_clip_synthetic.pt

Seeded and deterministic for a given torch build and ``--threads`` (default 1: thread count
changes the order of float reductions). Prints the sha256 of the
written file; record it in ``pretrained/README.md``.
"""
from __future__ import annotations

import argparse
import hashlib
import math
import os
import sys
import time
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

if __package__ in (None, ""):  # run as a file: make the repository root importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from trainers.common.openai_clip import clip  # noqa: E402

from tools.synthetic import world as sw  # noqa: E402
from tools.synthetic.check_story import load_checkpoint, print_report, story_report  # noqa: E402
from tools.synthetic.clip_input import images_to_tensor  # noqa: E402
from tools.synthetic.language import caption_for, name_forms  # noqa: E402
from tools.synthetic.render import IMAGE_SIZE, render_object  # noqa: E402

# Architecture. build_model() infers heads = width // 64, so widths are multiples of 64.
ARCH: Dict[str, int] = dict(
    embed_dim=64,
    image_resolution=IMAGE_SIZE,
    vision_layers=4,
    vision_width=64,
    vision_patch_size=8,
    context_length=77,
    vocab_size=49408,
    transformer_width=64,
    transformer_heads=1,
    transformer_layers=3,
)

# Caption statistics (the "web" the tiny CLIP is trained on).
CLASS_COMBO_RATE = 0.3  # share of samples drawn from the 40 class combinations
# Share of a class combination's captions that mention the class name. Calibrated (world
# version 2, datasets/SYNTHETIC.md): at 0.05 names were so weakly grounded that zero-shot
# CLIP stayed near 20-30% and every prompt method started far below the real regime.
NAME_RATE = 0.2
# Share of named captions that name another class (as web captions misname rare species):
# rare names end up weakly grounded, as with real CLIP.
NAME_NOISE = 0.3
# Misnamed captions are short, name-only ones ("this is a <other class>."), as web alt-texts
# that misname a rare species are; CLIP's zero-shot template "a photo of {an}." is one of
# their frames, so, as on the real benchmarks, the template is a fair but not the best way
# to ask for a name, and learnt prompts have something to gain (calibration, SYNTHETIC.md).
MISNAMED_FRAMES = ("a photo of {an}.", "this is {an}.", "a {n}.", "{an}.")
MAX_LOGIT_SCALE = 100.0  # CLIP's clamp of exp(logit_scale)
MAX_TOKENS = 32  # captions are shorter; EOT features are exact under the causal mask


def build_tiny_clip(seed: int) -> clip.model.CLIP:
    torch.manual_seed(seed)
    model = clip.model.CLIP(**ARCH)
    with torch.no_grad():
        # Start the temperature where real CLIP ends (its clamp, 100) instead of at 1/0.07: a
        # run this short would leave it near 14, soft logits spread the features of a class
        # over a wide cone, and prompt learning on top then behaves unlike on real CLIP.
        model.logit_scale.fill_(math.log(MAX_LOGIT_SCALE))
    return model


def encode_text_short(model: clip.model.CLIP, tokens: torch.Tensor) -> torch.Tensor:
    """``model.encode_text`` on the first ``tokens.shape[1]`` positions.

    The text transformer is causal, so the EOT feature depends only on the positions up to
    the EOT token: truncating padded positions gives the same result at a fraction of the cost.
    """
    n = tokens.shape[1]
    x = model.token_embedding(tokens) + model.positional_embedding[:n]
    x = x.permute(1, 0, 2)
    mask = model.transformer.resblocks[0].attn_mask[:n, :n]
    for block in model.transformer.resblocks:
        h = block.ln_1(x)
        x = x + block.attn(h, h, h, need_weights=False, attn_mask=mask)[0]
        x = x + block.mlp(block.ln_2(x))
    x = model.ln_final(x.permute(1, 0, 2))
    return x[torch.arange(x.shape[0]), tokens.argmax(dim=-1)] @ model.text_projection


class PairSampler:
    """Draws (image, caption) batches from the world's whole attribute space.

    Images come from a pool rendered once (rendering costs about as much as a training
    step); every draw pairs a pooled image with a freshly drawn caption.
    """

    def __init__(self, world: sw.World, seed: int, pool_size: int = 6144) -> None:
        self.world = world
        self.rng = np.random.default_rng([sw.WORLD_VERSION, world.seed, 3, seed])
        combos = sw.all_combinations()
        class_combos = [c.visible for c in world.classes]
        self.class_of = {c.visible: c for c in world.classes}
        self.pool_combos: List[Tuple[str, str, str, str]] = []
        for _ in range(pool_size):
            if self.rng.random() < CLASS_COMBO_RATE:
                self.pool_combos.append(class_combos[self.rng.integers(len(class_combos))])
            else:
                self.pool_combos.append(combos[self.rng.integers(len(combos))])
        self.pool = images_to_tensor([render_object(*c, self.rng) for c in self.pool_combos])

    def sample(self, batch: int) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Images, tokens, and the positive matrix (caption j is true of image i)."""
        rng = self.rng
        index = rng.choice(len(self.pool_combos), size=batch, replace=False)
        captions, combos, constraints = [], [], []
        for i in index:
            combo = self.pool_combos[i]
            values = dict(zip(sw.VISIBLE_ATTRIBUTES, combo))
            cls = self.class_of.get(combo)
            name = cls.name if cls is not None and rng.random() < NAME_RATE else None
            noisy = name is not None and rng.random() < NAME_NOISE
            if noisy:
                others = [c for c in self.world.classes if c is not cls]
                name = others[rng.integers(len(others))].name
            caption, described = caption_for(values, rng, None if noisy else name)
            if noisy:  # the wrong name alone
                frame = MISNAMED_FRAMES[rng.integers(len(MISNAMED_FRAMES))]
                caption, described = frame.format(**name_forms(name)), ()
            # What the caption asserts: a name stands for its class's whole combination; a
            # misnamed caption is a positive of its own image only.
            mentioned = sw.VISIBLE_ATTRIBUTES if name else described
            captions.append(caption)
            combos.append(combo)
            constraints.append(None if noisy else
                               [(k, combo[k]) for k, a in enumerate(sw.VISIBLE_ATTRIBUTES) if a in mentioned])
        pos = torch.tensor(
            [[(i == j) if cons is None else all(img[k] == v for k, v in cons)
              for j, cons in enumerate(constraints)] for i, img in enumerate(combos)],
            dtype=torch.float32,
        )
        tokens = clip.tokenize(captions)[:, :MAX_TOKENS]
        return self.pool[torch.from_numpy(index)], tokens, pos


def multi_positive_loss(img: torch.Tensor, txt: torch.Tensor, scale: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """Symmetric CLIP loss whose targets spread over every true pair.

    A batch from 150 combinations holds many captions true of several images ("a red
    thing"); treating those as negatives, as plain CLIP does, only slows a tiny run down.
    """
    logits = scale * F.normalize(img, dim=-1) @ F.normalize(txt, dim=-1).t()
    t_img = pos / pos.sum(1, keepdim=True)
    t_txt = pos / pos.sum(0, keepdim=True)
    loss_i = -(t_img * F.log_softmax(logits, dim=1)).sum(1).mean()
    loss_t = -(t_txt * F.log_softmax(logits, dim=0)).sum(0).mean()
    return (loss_i + loss_t) / 2


def export_state_dict(model: clip.model.CLIP) -> Dict[str, torch.Tensor]:
    """A plain state dict for ``clip.model.build_model``: matrices in fp16, vectors fp32."""
    out = {}
    for key, value in model.state_dict().items():
        value = value.detach().cpu().contiguous()
        if value.is_floating_point() and value.dim() >= 2:
            value = value.half()
        out[key] = value.clone()
    return out


def sha256_of(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def train(steps: int, batch: int, lr: float, seed: int, log_every: int = 25) -> clip.model.CLIP:
    world = sw.build_world()
    model = build_tiny_clip(seed)
    model.train()
    sampler = PairSampler(world, seed)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and "embedding" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.dim() >= 2 and "embedding" not in n)]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.05}, {"params": no_decay, "weight_decay": 0.0}],
        lr=lr, betas=(0.9, 0.98), eps=1e-6,
    )
    warmup = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / warmup if s < warmup else 0.5 * (1 + math.cos(math.pi * (s - warmup) / max(1, steps - warmup)))
    )
    start = time.time()
    for step in range(steps):
        images, tokens, pos = sampler.sample(batch)
        loss = multi_positive_loss(
            model.encode_image(images), encode_text_short(model, tokens), model.logit_scale.exp(), pos
        )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(MAX_LOGIT_SCALE))
        if step % log_every == 0 or step == steps - 1:
            print(f"step {step + 1}/{steps} loss {loss.item():.4f} scale {model.logit_scale.exp().item():.1f} "
                  f"({time.time() - start:.0f}s)", flush=True)
    return model.eval()


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="pretrained/tiny_clip_synthetic.pt")
    parser.add_argument("--steps", type=int, default=1200)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads; results are bit-reproducible for a fixed value")
    parser.add_argument("--no-report", action="store_true", help="skip the zero-shot story check")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = train(args.steps, args.batch, args.lr, args.seed)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    torch.save(export_state_dict(model), args.out)
    print(f"Saved {args.out} ({os.path.getsize(args.out) / 2**20:.1f} MiB)")
    print(f"sha256 {sha256_of(args.out)}")
    if not args.no_report:
        print_report(story_report(load_checkpoint(args.out)))


if __name__ == "__main__":
    main()
