"""Text-side benchmark: our truncated, evaluate-once text path vs the plain upstream one.

For CoOp and KgCoOp at several class counts (Caltech101 names, "a photo of a" context),
on a ViT-B/16-shaped CLIP with random weights, on the CPU in float32:

* text step:  prompts -> text features, forward + backward (KgCoOp: + its KG term);
* train step: a whole training step at batch ``--train-batch`` (image encoder frozen);
* evaluation: ``--eval-batches`` batches of ``--eval-batch-size`` images.

The plain path runs the text transformer over all 77 positions and recomputes the
text features for every test batch, as upstream CoOp does. Outputs are checked equal.

    python bench/bench_text.py                                   # the full run (slow)
    python bench/bench_text.py --arch tiny --classes 10 --eval-batches 2 --eval-batch-size 4
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List

import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from trainers.common.openai_clip import clip  # noqa: E402

from trainers.common.model import PromptCLIP  # noqa: E402
from trainers.common.prompt_learner import PromptLearner  # noqa: E402
from trainers.common.templates import CUSTOM_TEMPLATES_KG  # noqa: E402
from trainers.common.text_encoder import TextEncoder, class_text_features  # noqa: E402

ARCHS = {  # CLIP(embed_dim, image_resolution, vision_layers, vision_width, patch, ctx_len, vocab, width, heads, layers)
    "vit_b16": (512, 224, 12, 768, 16, 77, 49408, 512, 8, 12),
    "tiny": (64, 32, 1, 64, 16, 77, 49408, 64, 1, 2),
}


def caltech_names(n: int) -> List[str]:
    base = (REPO / "attribute_data" / "classnames" / "caltech101.txt").read_text().split("\n")
    base = [b.strip() for b in base if b.strip()]
    return [base[i % len(base)] + ("" if i < len(base) else f" type {i // len(base)}") for i in range(n)]


def plain_text_features(model: PromptCLIP) -> torch.Tensor:
    """Upstream's path: 77 positions through CLIP's own blocks and mask."""
    learner = model.prompt_learner
    prompts = learner()
    tokenized = learner.tokenized_prompts
    pad = 77 - prompts.shape[1]  # learner buffers are cut; re-append the padding embeddings
    pad_tokens = torch.zeros(prompts.shape[0], pad, dtype=torch.long)
    prompts = torch.cat([prompts, model.text_encoder.token_embedding(pad_tokens).to(prompts.dtype)], dim=1)
    enc = model.text_encoder
    x = prompts + enc.positional_embedding
    x = enc.transformer(x.permute(1, 0, 2)).permute(1, 0, 2)
    x = enc.ln_final(x)
    x = x[torch.arange(x.shape[0]), tokenized.argmax(-1)] @ enc.text_projection
    return F.normalize(x, dim=-1)


def timed(fn: Callable[[], torch.Tensor], repeats: int) -> tuple:
    out = fn()  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        out = fn()
    return (time.perf_counter() - start) / repeats, out


def bench(method: str, n_cls: int, clip_model: clip.model.CLIP, args) -> Dict[str, float]:
    torch.manual_seed(0)
    learner = PromptLearner(caltech_names(n_cls), clip_model, ctx_init="a photo of a", verbose=False)
    model = PromptCLIP(clip_model, learner)
    kg = None
    if method == "KgCoOp":
        kg = class_text_features(TextEncoder(clip_model), caltech_names(n_cls), [CUSTOM_TEMPLATES_KG["Caltech101"]])
    res = clip_model.visual.input_resolution
    images = torch.randn(args.train_batch, 3, res, res)
    labels = torch.randint(0, n_cls, (args.train_batch,))

    def text_loss(features):
        loss = features[labels].square().mean()  # any loss that touches the features
        if kg is not None:
            loss = loss + 8.0 * (1 - F.cosine_similarity(features, kg, dim=-1).mean())
        return loss

    def text_step(text_fn):
        def step():
            learner.ctx.grad = None
            features = text_fn()
            text_loss(features).backward()
            return learner.ctx.grad.clone()
        return step

    def train_step(text_fn):
        def step():
            learner.ctx.grad = None
            with torch.no_grad():
                img = model.encode_image(images)
            features = text_fn()
            loss = F.cross_entropy(model.logits(img, features), labels)
            if kg is not None:
                loss = loss + 8.0 * (1 - F.cosine_similarity(features, kg, dim=-1).mean())
            loss.backward()
            return learner.ctx.grad.clone()
        return step

    eval_images = [torch.randn(args.eval_batch_size, 3, res, res) for _ in range(args.eval_batches)]

    @torch.no_grad()
    def evaluate_once():
        features = model.text_features()
        return torch.cat([model(batch, text_features=features) for batch in eval_images])

    @torch.no_grad()
    def evaluate_plain():
        return torch.cat([model.logits(model.encode_image(b), plain_text_features(model)) for b in eval_images])

    row = {}
    for label, ours, plain in (
        ("text", text_step(model.text_features), text_step(lambda: plain_text_features(model))),
        ("train", train_step(model.text_features), train_step(lambda: plain_text_features(model))),
        ("eval", evaluate_once, evaluate_plain),
    ):
        repeats = 1 if label == "eval" else args.repeats
        t_ours, out_ours = timed(ours, repeats)
        t_plain, out_plain = timed(plain, repeats)
        diff = (out_ours - out_plain).abs().max().item()
        scale = max(1.0, out_plain.abs().max().item())
        if diff > 1e-4 * scale:
            raise AssertionError(f"{method} {n_cls} {label}: outputs differ by {diff}")
        row[label] = (t_ours, t_plain, diff)
    return row


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--arch", choices=sorted(ARCHS), default="vit_b16")
    parser.add_argument("--classes", type=int, nargs="+", default=[10, 100, 500])
    parser.add_argument("--methods", nargs="+", default=["CoOp", "KgCoOp"], choices=["CoOp", "KgCoOp"])
    parser.add_argument("--train-batch", type=int, default=32)
    parser.add_argument("--eval-batches", type=int, default=10)
    parser.add_argument("--eval-batch-size", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats of the text/train steps")
    parser.add_argument("--threads", type=int, default=int(os.environ.get("BENCH_THREADS", 1)))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    clip_model = clip.model.CLIP(*ARCHS[args.arch]).float().eval()
    clip_model.requires_grad_(False)
    print(f"arch {args.arch}, CPU fp32, {args.threads} thread(s); times in seconds (ours / plain = speed-up)")
    header = f"{'method':8} {'classes':>7}  " + "  ".join(f"{k:>26}" for k in ("text step", "train step", "evaluation"))
    print(header)
    for method in args.methods:
        for n_cls in args.classes:
            row = bench(method, n_cls, clip_model, args)
            cells = [f"{o:8.3f} /{p:8.3f} = {p / o:5.1f}x" for o, p, _ in row.values()]
            print(f"{method:8} {n_cls:7d}  " + "  ".join(f"{c:>26}" for c in cells), flush=True)
    print("outputs of both paths agree (max abs diff checked per cell)")


if __name__ == "__main__":
    main()
