"""Image-feature cache benchmarks (docs/feature-cache.md), on the CPU.

``eval``: the evaluation of a prompt (CoOp, "a photo of a" context) on the ViT-B/16
architecture with random weights, on ``--images`` test images of the synthetic world
(64 px, resized to 224): ``trainer.test()`` with the cache cold (computes and writes the
features), warm (reads them; a new trainer, as a new run would) and disabled. Checks that
the three accuracies are equal.

``grid``: the synthetic base-to-novel grid of the frozen-encoder methods x seeds through
the benchmark runner, as ``python -m tools.run_synthetic`` runs it (the scripts users run,
two runs at a time, one thread each), once with the cache disabled and once enabled from an
empty cache; wall time and the CPU time of all runs.

    python bench/bench_feature_cache.py eval --images 200
    python bench/bench_feature_cache.py grid --seeds 1 2 3
"""
from __future__ import annotations

import argparse
import contextlib
import io
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Sequence

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import train  # noqa: E402
from dassl.data import build_data_loader  # noqa: E402
from dassl.engine import build_trainer  # noqa: E402
from dassl.utils import set_random_seed  # noqa: E402
from trainers.common.openai_clip import clip  # noqa: E402
from bench.random_clip import VIT_B16  # noqa: E402

# The methods whose image encoder is frozen on the synthetic world (SemPT runs its MaPLe
# label branch there, which prompts the image tower).
FROZEN_METHODS = ("zsclip", "dclip", "cupl", "coop", "cocoop", "kgcoop", "prograd", "tcp")


# ------------------------------------------------------------------------------------ eval
def write_random_vit_b16(path: Path) -> Path:
    torch.manual_seed(0)
    torch.save(clip.model.CLIP(*VIT_B16).half().state_dict(), path)  # half: 300 MB on disk
    return path


def coop_trainer(data: str, backbone: Path, out: Path, cache: Path, *opts: str):
    args = train.build_parser().parse_args([
        "--root", data, "--seed", "1", "--trainer", "CoOp", "--output-dir", str(out),
        "--dataset-config-file", str(REPO / "configs/datasets/synthetic.yaml"),
        "--config-file", str(REPO / "configs/trainers/CoOp/synthetic.yaml"),
        "MODEL.BACKBONE.NAME", str(backbone), "INPUT.SIZE", "(224, 224)", "DATASET.NUM_SHOTS", "16",
        "DATASET.SUBSAMPLE_CLASSES", "new", "DATALOADER.TEST.BATCH_SIZE", "50", "FEATURE_CACHE.DIR", str(cache), *opts,
    ])
    train.register_components()
    cfg = train.setup_cfg(args)
    set_random_seed(cfg.SEED)
    with contextlib.redirect_stdout(io.StringIO()):
        return build_trainer(cfg)


def timed_test(trainer, images: int) -> Dict[str, float]:
    trainer.test_loader = build_data_loader(
        trainer.cfg, data_source=trainer.dm.dataset.test[:images], batch_size=trainer.cfg.DATALOADER.TEST.BATCH_SIZE,
        tfm=trainer.dm.tfm_test, is_train=False,
    )
    log = io.StringIO()
    wall, cpu = time.perf_counter(), time.process_time()
    with contextlib.redirect_stdout(log), contextlib.redirect_stderr(io.StringIO()):
        accuracy = trainer.test()
    return {"wall": time.perf_counter() - wall, "cpu": time.process_time() - cpu, "accuracy": accuracy,
            "cache": [line for line in log.getvalue().splitlines() if line.startswith("Image-feature cache")][-1]}


def bench_eval(args) -> None:
    from tools.synthetic.generate import ensure_world

    torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="bench_feature_cache_"))
    data = args.data or str(work / "data")
    ensure_world(data)
    backbone = write_random_vit_b16(work / "vit_b16_random.pt")
    cache = work / "features"
    prompt = coop_trainer(data, backbone, work / "prompt", cache)  # the "trained" prompt: saved once
    prompt.save_model(0, str(work / "prompt"))
    results = {}
    for mode, opts in (("cold", ()), ("warm", ()), ("disabled", ("FEATURE_CACHE.ENABLED", "False"))):
        trainer = coop_trainer(data, backbone, work / mode, cache, *opts)
        with contextlib.redirect_stdout(io.StringIO()):
            trainer.load_model(str(work / "prompt"), epoch=1)
        results[mode] = timed_test(trainer, args.images)
        r = results[mode]
        print(f"{mode:9s} wall {r['wall']:8.2f} s  cpu {r['cpu']:8.2f} s  accuracy {r['accuracy']:.2f}  | {r['cache']}")
    assert results["cold"]["accuracy"] == results["warm"]["accuracy"] == results["disabled"]["accuracy"]
    cold, warm = results["cold"], results["warm"]
    print(f"{args.images} images, ViT-B/16 (random weights), {args.threads} thread(s): warm is "
          f"{cold['wall'] / warm['wall']:.0f}x faster (wall), {cold['cpu'] / warm['cpu']:.0f}x less CPU; "
          "the three accuracies are equal")


# ------------------------------------------------------------------------------------ grid
def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_grid(methods: Sequence[str], seeds: Sequence[int], data: str, out: Path, jobs: int, extra: List[str]) -> float:
    """Wall seconds of the base-to-novel grid through the benchmark runner (as the main job runs it)."""
    env = dict(os.environ, DATA=data, SEMPT_CACHE_DIR=str(out / "project_cache"))
    env.pop("CFG", None)
    command = [sys.executable, "-m", "tools.benchmark", "run", "--protocol", "base2new", "--datasets", "synthetic",
               "--methods", *methods, "--seeds", *map(str, seeds), "--output", str(out), "--slots", str(jobs),
               "--threads", "1", "--no-progress"]
    if extra:
        command += ["--opts", *extra]
    start = time.perf_counter()
    subprocess.run(command, cwd=REPO, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def final_accuracies(out: Path) -> Dict[str, str]:
    found = {}
    for log in sorted((out / "base2new").rglob("log.txt")):
        found[str(log.parent.relative_to(out / "base2new"))] = re.findall(r"\* accuracy: ([\d.]+)%", log.read_text())[-1]
    return found


def bench_grid(args) -> None:
    from tools.synthetic.generate import ensure_world

    work = Path(tempfile.mkdtemp(prefix="bench_feature_cache_grid_"))
    data = args.data or str(work / "data")
    ensure_world(data)
    runs = {}
    for mode in ("disabled", "enabled"):
        out = work / mode
        extra = ["FEATURE_CACHE.ENABLED", "False"] if mode == "disabled" else ["FEATURE_CACHE.DIR", str(out / "features")]
        cpu = children_cpu()
        wall = run_grid(args.methods, args.seeds, data, out, args.jobs, extra)
        runs[mode] = {"wall": wall, "cpu": children_cpu() - cpu, "accuracies": final_accuracies(out)}
        print(f"cache {mode:8s}: wall {wall:7.1f} s, CPU of all runs {runs[mode]['cpu']:7.1f} s "
              f"({len(runs[mode]['accuracies'])} runs)")
    assert runs["disabled"]["accuracies"] == runs["enabled"]["accuracies"], "the cache changed a number"
    d, e = runs["disabled"], runs["enabled"]
    print(f"{len(args.methods)} methods x seeds {args.seeds}: {d['wall'] / e['wall']:.2f}x less wall time, "
          f"{d['cpu'] / e['cpu']:.2f}x less CPU time with the cache (from empty); every accuracy is the same")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    ev = sub.add_parser("eval")
    ev.add_argument("--images", type=int, default=200)
    ev.add_argument("--threads", type=int, default=2)
    grid = sub.add_parser("grid")
    grid.add_argument("--methods", nargs="+", default=list(FROZEN_METHODS))
    grid.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    grid.add_argument("--jobs", type=int, default=2)
    for cmd in (ev, grid):
        cmd.add_argument("--data", default="", help="data root holding (or to hold) the synthetic world")
    args = parser.parse_args(argv)
    bench_eval(args) if args.command == "eval" else bench_grid(args)


if __name__ == "__main__":
    main()
