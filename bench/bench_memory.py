"""Peak CPU memory of one training step at ImageNet scale (1000 classes, ViT-B/16 architecture).

Every configuration runs in a fresh interpreter: it builds the method from its ImageNet config
(``CONFIGS``) through ``train.py``'s code path on a fabricated 1000-class ImageNet tree and a
randomly initialised ViT-B/16 CLIP (``bench/random_clip.py``), then runs one
``forward_backward`` on one fixed batch of the config's batch size. Reported, in GiB:

* ``built``: the process RSS once the trainer is built (weights, class prompts, caches, the
  interpreter and torch's libraries), after returning freed memory to the system;
* ``step peak``: the peak RSS during the training step (the kernel's high-water mark, reset
  after building through ``/proc/self/clear_refs``), so loading-time peaks do not count.

Precisions: ``fp32`` and ``fp16`` (``TRAINER.<X>.PREC fp16`` with ``MODEL.PREC_ON_CPU True``:
fp16 weights, as on a GPU), each with and without ``MODEL.ACT_CHECKPOINT``.

fp16 matrix products have no fast kernel on most CPUs (x86 without AVX512-FP16: ~25x slower
than fp32), so a 1000-class fp16 step takes most of an hour on one core. ``--half-dtype
bfloat16`` then stores the ``fp16`` mode's half-precision weights and activations as bfloat16
instead: the same element size, the same tensors, the same code path, with fast kernels. It
measures the same bytes; ``--validate`` checks that claim on a configuration small enough for
real fp16 (both dtypes, same step), and the table says which dtype each row used.

    python bench/bench_memory.py                          # the whole grid (real fp16: hours on CPU)
    python bench/bench_memory.py --half-dtype bfloat16    # the grid, fp16 rows as bfloat16 (~1 h, 1 core)
    python bench/bench_memory.py --configs CoOp --precisions fp32 --checkpointing on
    python bench/bench_memory.py --validate --configs CoOp --checkpointing on  # fp16 vs its stand-in
    python bench/bench_memory.py --report results.jsonl    # the table of earlier --json results
"""
from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# (label, trainer, config under configs/trainers, extra options): each method's ImageNet config
# (scripts/<method>/method.sh DEFAULT_CFG_IMAGENET; KgCoOp ships none and trains ImageNet with
# its base-to-novel config), with its own batch size.
CONFIGS: Dict[str, tuple] = {
    "CoOp": ("CoOp", "CoOp/vit_b16_ep50_ctxv1.yaml", ()),
    "KgCoOp": ("KgCoOp", "KgCoOp/vit_b16_ep100_ctxv1.yaml", ()),
    "MaPLe": ("MaPLe", "MaPLe/vit_b16_c2_ep5_batch4_2ctx_cross_datasets.yaml", ()),
    "PromptSRC": ("PromptSRC", "PromptSRC/vit_b16_c2_ep20_batch4_4+4ctx_cross_datasets.yaml", ()),
    "TCP": ("TCP", "TCP/vit_b16_ep25_ctxv1.yaml", ()),
    "SemPT (coop)": ("SemPT", "SemPT/vit_b16_ep50_ctxv1.yaml", ()),
    "SemPT (maple)": ("SemPT", "SemPT/vit_b16_c2_ep5_batch4_2ctx_maple_cross_datasets.yaml", ()),
}
GIB = 2**30


def rss_bytes(field: str) -> int:
    """``VmRSS`` or ``VmHWM`` (peak) of this process, from /proc/self/status."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"/proc/self/status has no {field} (this benchmark needs Linux)")


def release_free_memory() -> None:
    """Return the C allocator's free pages to the system (glibc ``malloc_trim``), so ``built``
    counts live memory, not what loading freed (the fp32 CLIP built before its fp16 cast)."""
    import ctypes

    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: the RSS then includes the allocator's free pages
        pass


def reset_peak_rss() -> None:
    # Linux >= 4.0: writing 5 resets VmHWM to the current RSS (proc(5), clear_refs).
    Path("/proc/self/clear_refs").write_text("5")


def use_bfloat16_for_half() -> None:
    """Make the fp16 mode keep its half-precision tensors as bfloat16 (see the module docstring):
    the precision resolved for fp16 gets bfloat16 weights, and the CLIP model's float16
    tensors (what ``clip.build_model`` leaves in half) become bfloat16."""
    import torch
    from trainers.common import trainer as trainer_module
    from trainers.common.precision import Precision

    resolve = trainer_module.resolve_precision

    def apply(self, clip_model):
        for tensor in list(clip_model.parameters()) + list(clip_model.buffers()):
            if tensor.dtype is torch.float16:
                tensor.data = tensor.data.to(torch.bfloat16)
        return clip_model

    def resolve_as_bfloat16(prec, device, on_cpu=False):
        precision = resolve(prec, device, on_cpu=on_cpu)
        if precision.weight_dtype is not torch.float16:
            return precision
        patched = type("BFloat16Precision", (Precision,), {"apply": apply})
        return patched(**{f.name: getattr(precision, f.name) for f in dataclasses.fields(Precision)}
                       | {"weight_dtype": torch.bfloat16})

    trainer_module.resolve_precision = resolve_as_bfloat16


def measure_one(args) -> dict:
    """Build one configuration in this process and measure its step (the child's work)."""
    import torch

    import train
    from dassl.engine import TRAINER_REGISTRY, build_trainer
    from dassl.utils import set_random_seed

    torch.set_num_threads(args.threads)
    if args.precision == "fp16" and args.half_dtype == "bfloat16":
        use_bfloat16_for_half()
    trainer_name, config, extra = CONFIGS[args.config]
    train.register_components()
    node = TRAINER_REGISTRY.get(trainer_name).CFG_NODE
    opts = [
        "--root", args.data, "--trainer", trainer_name, "--output-dir", str(Path(args.work) / "out"),
        "--dataset-config-file", str(REPO / "configs" / "datasets" / "imagenet.yaml"),
        "--config-file", str(REPO / "configs" / "trainers" / config),
        "DATASET.NUM_SHOTS", "1", "DATASET.CACHE_DIR", str(Path(args.work) / "dataset_cache"),
        "MODEL.BACKBONE.NAME", args.clip, "DATALOADER.NUM_WORKERS", "0", "OPTIM.MAX_EPOCH", "1",
        "USE_CUDA", "False", "FEATURE_CACHE.ENABLED", "False",
        "MODEL.PREC_ON_CPU", "True", f"TRAINER.{node}.PREC", args.precision,
        "MODEL.ACT_CHECKPOINT", str(args.checkpointing == "on"), *extra,
    ]
    if args.batch:
        opts += ["DATALOADER.TRAIN_X.BATCH_SIZE", str(args.batch)]
    cli = train.build_parser().parse_args(opts)
    cfg = train.setup_cfg(cli)
    set_random_seed(1)
    trainer = build_trainer(cfg)
    if trainer.num_classes != args.classes:
        raise RuntimeError(f"{args.config} sees {trainer.num_classes} classes, expected {args.classes}")
    batch_size = cfg.DATALOADER.TRAIN_X.BATCH_SIZE
    size = cfg.INPUT.SIZE[0]
    g = torch.Generator().manual_seed(0)
    batch = {"img": torch.randn(batch_size, 3, size, size, generator=g),
             "label": torch.randint(0, args.classes, (batch_size,), generator=g)}
    trainer.set_model_mode("train")
    gc.collect()
    release_free_memory()
    built = rss_bytes("VmRSS")
    reset_peak_rss()
    start = time.perf_counter()
    summary = trainer.forward_backward(batch)
    seconds = time.perf_counter() - start
    peak = rss_bytes("VmHWM")
    weight_dtypes = sorted({str(p.dtype).replace("torch.", "") for p in trainer.model.parameters()})
    return {"config": args.config, "precision": args.precision, "checkpointing": args.checkpointing,
            "half_dtype": args.half_dtype if args.precision == "fp16" else "", "batch": batch_size,
            "classes": trainer.num_classes, "built_gib": built / GIB, "step_peak_gib": peak / GIB,
            "step_s": seconds, "loss": float(summary["loss"]), "weight_dtypes": weight_dtypes}


def run_child(config: str, precision: str, checkpointing: str, half_dtype: str, args, work: Path,
              data: str, clip: str, classes: int, batch: int) -> dict:
    """One configuration in a fresh interpreter; its JSON result, or the reason it failed."""
    command = [sys.executable, str(Path(__file__).resolve()), "--child", "--config", config,
               "--precision", precision, "--checkpointing", checkpointing, "--half-dtype", half_dtype,
               "--work", str(work), "--data", data, "--clip", clip, "--classes", str(classes),
               "--batch", str(batch), "--threads", str(args.threads)]
    env = dict(os.environ, PYTHONPATH=str(REPO), SEMPT_CACHE_DIR=str(work / "sempt_cache"))
    proc = subprocess.run(command, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or [f"exit {proc.returncode}"]
        return {"config": config, "precision": precision, "checkpointing": checkpointing,
                "half_dtype": half_dtype if precision == "fp16" else "", "error": tail[0]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def prepare(work: Path, classes: int) -> tuple:
    from bench.random_clip import VIT_B16, write_random_clip
    from tests.utils.fabricate import make_imagenet_tree

    clip = work / "vit_b16_random.pt"
    if not clip.is_file():
        write_random_clip(clip, VIT_B16)
    data_root = work / f"imagenet{classes}"
    if not (data_root / "imagenet").is_dir():
        make_imagenet_tree(data_root, n_train=1, n_val=1, n_classes=classes, with_classnames=True)
    return str(data_root), str(clip)


def table(results: Sequence[dict]) -> str:
    rows = ["| method | batch | PREC | ACT_CHECKPOINT | built (GiB) | step peak (GiB) | step (s) |",
            "|---|---|---|---|---|---|---|"]
    for r in results:
        prec = r["precision"] + (" (as bfloat16)" if r.get("half_dtype") == "bfloat16" else "")
        if "error" in r:
            rows.append(f"| {r['config']} | | {prec} | {r['checkpointing']} | failed: {r['error']} | | |")
            continue
        rows.append(f"| {r['config']} | {r['batch']} | {prec} | {r['checkpointing']} | {r['built_gib']:.2f} "
                    f"| {r['step_peak_gib']:.2f} | {r['step_s']:.0f} |")
    return "\n".join(rows)


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="+", choices=sorted(CONFIGS), default=list(CONFIGS))
    parser.add_argument("--precisions", nargs="+", choices=["fp32", "fp16"], default=["fp16", "fp32"])
    parser.add_argument("--checkpointing", nargs="+", choices=["on", "off"], default=["on", "off"])
    parser.add_argument("--half-dtype", choices=["float16", "bfloat16"], default="float16",
                        help="storage of the fp16 mode's half-precision tensors (see above)")
    parser.add_argument("--classes", type=int, default=1000, help="first N ImageNet classes (default 1000)")
    parser.add_argument("--batch", type=int, default=0, help="override every config's batch size (0: the config's)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--work", default="", help="folder for the checkpoint, data and caches (default: a temporary one)")
    parser.add_argument("--json", default="", help="append each result to this JSON-lines file")
    parser.add_argument("--report", default="", help="only print the table of a --json file's results")
    parser.add_argument("--validate", action="store_true",
                        help="fp16 stored as float16 and as bfloat16, side by side (default: 100 classes, batch 4)")
    # the child's arguments
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--config", help=argparse.SUPPRESS)
    parser.add_argument("--precision", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--clip", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        args.checkpointing = args.checkpointing[0]
        print(json.dumps(measure_one(args)))
        return

    if args.report:
        print(table([json.loads(line) for line in Path(args.report).read_text().splitlines() if line.strip()]))
        return
    if args.validate:  # real fp16 must stay affordable: few classes, a small batch
        args.precisions = ["fp16"]
        args.classes = 100 if args.classes == 1000 else args.classes
        args.batch = args.batch or 4
    grid = [(c, p, k, d) for k in args.checkpointing for p in args.precisions for c in args.configs
            for d in ((["float16", "bfloat16"] if args.validate else [args.half_dtype]) if p == "fp16" else ["float16"])]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work or tmp)
        work.mkdir(parents=True, exist_ok=True)
        data, clip = prepare(work, args.classes)
        results = []
        for config, precision, checkpointing, half_dtype in grid:
            result = run_child(config, precision, checkpointing, half_dtype, args, work, data, clip,
                               args.classes, args.batch)
            results.append(result)
            print(json.dumps(result), file=sys.stderr, flush=True)
            if args.json:
                with open(args.json, "a") as f:
                    f.write(json.dumps(result) + "\n")
    print(f"\nViT-B/16 architecture (random weights), {args.classes} classes, CPU, {args.threads} thread(s), "
          "one training step; process RSS\n")
    print(table(results))


if __name__ == "__main__":
    main()
