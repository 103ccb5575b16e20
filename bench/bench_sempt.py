"""SemPT's training step next to CoOp's (issue: SemPT at most 1.2x CoOp's step time).

ViT-B/16 CLIP architecture with random weights on the CPU (fp32), 50 classes (the
base half of a fabricated Caltech101 tree), K=6 attributes with realistic sentence
lengths, batch 32. Times ``forward_backward`` on one fixed batch (no data loading)
for CoOp, SemPT with frozen descriptions (the default) and SemPT with prompted
descriptions, and prints a table.

    python bench/bench_sempt.py                 # the issue's setting (a few minutes)
    python bench/bench_sempt.py --arch tiny     # seconds: checks that the script runs
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.random_clip import VIT_B16, write_random_clip  # noqa: E402

ARCHS = {"vit_b16": VIT_B16, "tiny": (64, 32, 1, 64, 16, 77, 49408, 64, 1, 1)}  # clip.model.CLIP's arguments


def write_attribute_file(path: Path, classnames, n_attr: int) -> None:
    from trainers.parts.attributes import normalize_classname

    attrs = [f"attribute_{k}" for k in range(n_attr)]
    filler = "with a clearly visible shape colour texture and set of parts seen in an ordinary photo number"
    classes = [
        {"name": name, "descriptions": {a: [f"A {normalize_classname(name)} shows {a} {filler} {i}."] for a in attrs}}
        for i, name in enumerate(classnames)
    ]
    data = {"dataset": "Caltech101", "domain": "objects",
            "attributes": [{"name": a, "definition": a} for a in attrs], "classes": classes}
    path.write_text(json.dumps(data))


def build(trainer: str, root: str, work: Path, clip_path: Path, size: int, batch: int, opts):
    import train
    from dassl.engine import build_trainer
    from dassl.utils import set_random_seed

    args = train.build_parser().parse_args([
        "--root", root, "--trainer", trainer, "--output-dir", str(work / f"out_{trainer}"),
        "--dataset-config-file", str(REPO / "configs/datasets/caltech101.yaml"),
        "DATASET.NUM_SHOTS", "16", "DATASET.SUBSAMPLE_CLASSES", "base", "DATASET.CACHE_DIR", str(work / "cache"),
        "MODEL.BACKBONE.NAME", str(clip_path), "INPUT.SIZE", f"({size}, {size})",
        "DATALOADER.NUM_WORKERS", "0", "DATALOADER.TRAIN_X.BATCH_SIZE", str(batch),
        "OPTIM.NAME", "sgd", "OPTIM.LR", "0.002", "OPTIM.MAX_EPOCH", "1", "USE_CUDA", "False",
        "TRAINER.COOP.N_CTX", "4", "TRAINER.COOP.CTX_INIT", "a photo of a",
        "TRAINER.SEMPT.DESC_CACHE_DIR", str(work / "desc_cache"), *opts,
    ])
    train.register_components()
    set_random_seed(1)
    return build_trainer(train.setup_cfg(args))


def time_steps(trainer, batch, steps: int, warmup: int) -> float:
    trainer.set_model_mode("train")
    trainer.batch_idx, trainer.num_batches = 0, 10**9  # no epoch-end LR step inside the timing
    for _ in range(warmup):
        trainer.forward_backward(batch)
    start = time.perf_counter()
    for _ in range(steps):
        trainer.forward_backward(batch)
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", choices=sorted(ARCHS), default="vit_b16")
    parser.add_argument("--attributes", type=int, default=6)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--no-prompted", action="store_true", help="skip the prompted-description variant")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from tabulate import tabulate

    from tests.utils.fabricate import make_caltech101_tree

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        os.environ.setdefault("SEMPT_CACHE_DIR", str(work / "sempt_cache"))
        root = make_caltech101_tree(work / "data", n_per_class=4)
        clip_path = work / "clip.pt"
        size = write_random_clip(clip_path, ARCHS[args.arch])
        attr_path = work / "attributes.json"
        sempt_opts = ["TRAINER.SEMPT.ATTRIBUTE_FILE", str(attr_path), "TRAINER.SEMPT.PREC", "fp32"]
        variants = [("CoOp", "CoOp", []), ("SemPT (frozen descriptions)", "SemPT", sempt_opts)]
        if not args.no_prompted:
            variants.append(
                ("SemPT (prompted descriptions)", "SemPT", sempt_opts + ["TRAINER.SEMPT.DESC_ENCODER", "prompted"])
            )
        torch.manual_seed(0)
        image = torch.randn(args.batch, 3, size, size)
        label = torch.randint(0, 50, (args.batch,))
        rows, coop_time = [], None
        for title, trainer_name, opts in variants:
            trainer = build(trainer_name, root, work, clip_path, size, args.batch, opts)
            assert trainer.num_classes == 50, trainer.num_classes
            if not attr_path.exists():  # CoOp runs first: it tells the base class names
                write_attribute_file(attr_path, trainer.dm.dataset.classnames, args.attributes)
            seconds = time_steps(trainer, {"img": image, "label": label}, args.steps, args.warmup)
            coop_time = coop_time or seconds
            rows.append([title, f"{seconds * 1000:.0f}", f"{seconds / coop_time:.2f}x"])
            del trainer
        print(f"\n{args.arch}, CPU fp32, {torch.get_num_threads()} threads, 50 classes, K={args.attributes}, "
              f"batch {args.batch}, mean of {args.steps} steps after {args.warmup} warm-up")
        print(tabulate(rows, headers=["training step", "ms / step", "vs CoOp"], tablefmt="github"))


if __name__ == "__main__":
    main()
