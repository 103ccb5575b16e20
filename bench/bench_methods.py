"""One training step of every method, on the ViT-B/16 architecture with random weights.

Every method that has benchmark scripts (``scripts/<method>/method.sh``) and trains is built
from its own base-to-novel config (``DEFAULT_CFG``) through ``train.py``'s code path, on a
fabricated tree of 100 (Caltech101) or 1000 (ImageNet) classes, and times
``forward_backward`` on one fixed batch (no data loading), the text side alone (the class
text features, forward and backward) and, on a GPU, the peak memory. Methods that only
evaluate (zero-shot CLIP, the description classifiers) are listed as such.

    python bench/bench_methods.py                                   # CPU, fp32, 100 classes
    python bench/bench_methods.py --device cuda --classes 100 1000 --precisions amp fp16 bf16
    python bench/bench_methods.py --arch tiny --steps 1 --warmup 0  # seconds: checks that it runs
    python bench/bench_methods.py --arch vit_b16 open_clip:ViT-L-14 open_clip:ViT-B-16-SigLIP2

``open_clip:<model>`` architectures are built by open_clip's factory from its shipped config
with random weights (``MODEL.BACKBONE.PRETRAINED random``). A model whose tokenizer is
HuggingFace's (SigLIP) is timed with CLIP's BPE tokenizer at the model's context length
instead, so that nothing is downloaded: the text tower still runs its full context (no
causal mask), which is what its cost depends on. Ratios are to CoOp on the first
architecture given.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, List, Optional

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.random_clip import VIT_B16, write_random_clip  # noqa: E402

ARCHS = {"vit_b16": VIT_B16, "tiny": (64, 32, 2, 64, 16, 77, 49408, 64, 1, 2)}  # clip.model.CLIP's arguments
OPEN_CLIP = "open_clip:"
DATASETS = {100: ("caltech101", "Caltech101"), 1000: ("imagenet", "ImageNet")}


@dataclass
class Method:
    trainer: str
    config: Path
    eval_only: bool


@dataclass
class Result:
    arch: str
    method: str
    classes: int
    precision: str
    step_ms: Optional[float] = None
    text_ms: Optional[float] = None
    peak_gib: Optional[float] = None
    note: str = ""


def discover_methods() -> List[Method]:
    """The methods of ``scripts/*/method.sh`` with their default (base-to-novel) config."""
    methods = []
    for path in sorted((REPO / "scripts").glob("*/method.sh")):
        text = path.read_text()

        def var(name: str, default: str = "") -> str:
            m = re.search(rf"^{name}=(\S+)", text, re.M)
            return m.group(1) if m else default

        trainer = var("TRAINER")
        config = REPO / "configs" / "trainers" / var("CFG_DIR", trainer) / f"{var('DEFAULT_CFG')}.yaml"
        methods.append(Method(trainer, config, var("EVAL_ONLY") == "1"))
    return methods


def make_data(root: Path, classes: int) -> str:
    from tests.utils.fabricate import make_caltech101_tree, make_imagenet_tree

    if classes == 100:
        return make_caltech101_tree(root, n_per_class=4)
    return make_imagenet_tree(root, n_train=1, n_val=1)


def backbone_options(arch: str, work: Path) -> tuple:
    """``(MODEL.BACKBONE options, input size)`` of an architecture: an OpenAI-layout random
    checkpoint, or an open_clip config with random weights (see the module docstring)."""
    if not arch.startswith(OPEN_CLIP):
        path = work / f"{arch}.pt"
        size = write_random_clip(path, ARCHS[arch])
        return ("MODEL.BACKBONE.NAME", str(path)), size
    import open_clip

    name = arch[len(OPEN_CLIP):]
    if name.endswith(".json"):
        config, name = json.loads(Path(name).read_text()), Path(name).stem
    else:
        config = open_clip.get_model_config(name)
        if config is None:
            raise SystemExit(f"--arch {arch}: open_clip has no model config {name!r}")
        config = json.loads(json.dumps(config))
    text = config.get("text_cfg", {})
    if text.pop("hf_tokenizer_name", None):  # timed with CLIP's BPE: no download
        text.pop("tokenizer_kwargs", None)
    # A file name without "siglip": open_clip would pick SigLIP's HuggingFace tokenizer by name.
    path = work / f"bench-{name.lower().replace('siglip', 'sl')}.json"
    path.write_text(json.dumps(config))
    size = config["vision_cfg"]["image_size"]
    size = size if isinstance(size, int) else size[0]
    return ("MODEL.BACKBONE.NAME", f"{OPEN_CLIP}{path}", "MODEL.BACKBONE.PRETRAINED", "random"), size


def build(method: Method, classes: int, prec: str, device: str, data: str, backbone: tuple, size: int,
          batch: int, work: Path):
    import train
    from dassl.engine import build_trainer
    from dassl.engine import TRAINER_REGISTRY
    from dassl.utils import set_random_seed

    train.register_components()
    node = TRAINER_REGISTRY.get(method.trainer).CFG_NODE
    dataset, _ = DATASETS[classes]
    args = train.build_parser().parse_args([
        "--root", data, "--trainer", method.trainer, "--output-dir", str(work / f"out_{method.trainer}"),
        "--dataset-config-file", str(REPO / "configs" / "datasets" / f"{dataset}.yaml"),
        "--config-file", str(method.config),
        "DATASET.NUM_SHOTS", "1", "DATASET.CACHE_DIR", str(work / "cache"),
        *backbone, "INPUT.SIZE", f"({size}, {size})",
        "DATALOADER.NUM_WORKERS", "0", "DATALOADER.TRAIN_X.BATCH_SIZE", str(batch),
        "OPTIM.MAX_EPOCH", "1", "USE_CUDA", str(device == "cuda"), f"TRAINER.{node}.PREC", prec,
    ])
    set_random_seed(1)
    return build_trainer(train.setup_cfg(args))


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def timed(fn, steps: int, warmup: int, device: str) -> float:
    for _ in range(warmup):
        fn()
    synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    synchronize(device)
    return (time.perf_counter() - start) / steps * 1000


def bench_one(method: Method, arch: str, classes: int, prec: str, args, data: str, backbone: tuple, size: int,
              work: Path) -> Result:
    result = Result(arch, method.trainer, classes, prec)
    if method.eval_only:
        result.note = "evaluates only (no training step)"
        return result
    trainer = build(method, classes, prec, args.device, data, backbone, size, args.batch, work)
    if not trainer.get_model_names():
        result.note = "nothing to train"
        return result
    if trainer.num_classes != classes:
        raise RuntimeError(f"{method.trainer} sees {trainer.num_classes} classes, expected {classes}")
    g = torch.Generator().manual_seed(0)
    batch = {"img": torch.randn(args.batch, 3, size, size, generator=g),
             "label": torch.randint(0, classes, (args.batch,), generator=g)}
    trainer.set_model_mode("train")
    if args.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    result.step_ms = timed(lambda: trainer.forward_backward(batch), args.steps, args.warmup, args.device)
    if args.device == "cuda":
        result.peak_gib = torch.cuda.max_memory_allocated() / 2**30
    model = trainer.model

    def text_side() -> None:
        with trainer.precision.autocast():
            features = model.text_features()
        features.float().sum().backward()

    try:
        result.text_ms = timed(text_side, args.steps, args.warmup, args.device)
    except RuntimeError as err:  # nothing on the text side requires grad: its features are fixed (VPT)
        if "does not require grad" not in str(err):
            raise
        result.note = "text side frozen (fixed template features)"
    except (TypeError, NotImplementedError, AttributeError):
        if not hasattr(model, "text_features"):  # the linear probe: a head on image features
            result.note = "no text side (fits once by L-BFGS; the step is the image encoder and head)"
        else:
            result.note = "text features depend on the image"  # CoCoOp: its text side is part of the step
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", nargs="+", default=["vit_b16"],
                        help=f"{', '.join(sorted(ARCHS))} or open_clip:<model> (random weights); several: one table")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--classes", type=int, nargs="+", choices=sorted(DATASETS), default=[100])
    parser.add_argument("--precisions", nargs="+", default=None,
                        help="PREC values (default: fp32 on CPU, amp on GPU)")
    parser.add_argument("--methods", nargs="+", default=None, help="trainer names (default: every scripted method)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--json", default="", help="also write the results to this file")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: CUDA is not available on this machine")
    if args.threads:
        torch.set_num_threads(args.threads)
    precisions = args.precisions or (["fp32"] if args.device == "cpu" else ["amp"])
    methods = discover_methods()
    if args.methods:
        known = {m.trainer for m in methods}
        unknown = sorted(set(args.methods) - known)
        if unknown:
            raise SystemExit(f"unknown methods {unknown}; scripted methods: {sorted(known)}")
        methods = [m for m in methods if m.trainer in args.methods]
    # CoOp first: every row's ratio is to CoOp's step in the same setting.
    methods.sort(key=lambda m: (m.trainer != "CoOp", m.trainer))

    from tabulate import tabulate

    results: List[Result] = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        os.environ.setdefault("SEMPT_CACHE_DIR", str(work / "sempt_cache"))
        for arch in args.arch:
            if not arch.startswith(OPEN_CLIP) and arch not in ARCHS:
                raise SystemExit(f"--arch {arch}: choose from {sorted(ARCHS)} or open_clip:<model>")
            backbone, size = backbone_options(arch, work)
            for classes in args.classes:
                data = make_data(work / f"data{classes}", classes)
                for prec in precisions:
                    for method in methods:
                        try:
                            results.append(bench_one(method, arch, classes, prec, args, data, backbone, size, work))
                        except Exception as err:  # one method's failure must not hide the others' numbers
                            traceback.print_exc()
                            results.append(Result(arch, method.trainer, classes, prec,
                                                  note=f"failed: {type(err).__name__}: {err}"))
                        print(f"done: {results[-1]}", file=sys.stderr)
                        if args.device == "cuda":
                            torch.cuda.empty_cache()

    # Every ratio is to CoOp on the first architecture, same classes and precision.
    coop: Dict[tuple, float] = {(r.classes, r.precision): r.step_ms for r in results
                                if r.method == "CoOp" and r.step_ms and r.arch == args.arch[0]}

    def fmt(x: Optional[float], spec: str) -> str:
        return "-" if x is None else format(x, spec)

    rows = []
    for r in results:
        base = coop.get((r.classes, r.precision))
        ratio = f"{r.step_ms / base:.2f}x" if r.step_ms and base else "-"
        steps_per_s = fmt(1000 / r.step_ms if r.step_ms else None, ".2f")
        rows.append([r.arch, r.method, r.classes, r.precision, fmt(r.step_ms, ".0f"), steps_per_s, ratio,
                     fmt(r.text_ms, ".0f"), fmt(r.peak_gib, ".2f"), r.note])
    device = torch.cuda.get_device_name(0) if args.device == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"\n{', '.join(args.arch)} (random weights), {device}, batch {args.batch}, mean of {args.steps} steps "
          f"after {args.warmup} warm-up; 'vs CoOp': CoOp on {args.arch[0]}")
    print(tabulate(rows, headers=["arch", "method", "classes", "PREC", "step (ms)", "steps/s", "vs CoOp",
                                  "text fwd+bwd (ms)", "peak GPU mem (GiB)", "note"], tablefmt="github"))
    if args.json:
        Path(args.json).write_text(json.dumps([asdict(r) for r in results], indent=1))


if __name__ == "__main__":
    main()
