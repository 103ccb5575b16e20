"""Benchmark runner timings: the synthetic base-to-novel grid with 1 and 2 local slots, and on SLURM.

    python bench/bench_runner.py [--seeds 1 2 3] [--slurm] [--only CONFIG ...] [--keep DIR]

The grid: every method that can run on the synthetic world (``scripts/*/method.sh`` with a
``synthetic`` config) x the seeds, base-to-novel (train + test), with the configs' own
epochs, each configuration into a fresh output folder and description cache. Timed as
users run it: ``python -m tools.benchmark run ...`` in a subprocess. With ``--slurm`` (a
cluster must answer, e.g. ``bash tools/slurm/local_cluster.sh start``) the same grid runs
through ``--launcher slurm`` with one CPU per array task; its per-task overhead is
(SLURM wall time - 2-slot local wall time) / array tasks, both running two at a time.
``slots1-threads1`` (one slot, one thread; run with ``--only slots1-threads1``) separates
the cost of two threads inside one small run from the gain of two runs at once.
The machine's load average is printed with every number: other work skews them.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tools.grid.methods import discover_methods  # noqa: E402
from tools.grid.plan import PlanError, Invocation, plan_invocation, script_variables  # noqa: E402


def synthetic_methods(env: Dict[str, str]) -> List[str]:
    """The methods whose scripts can plan a synthetic run (they have a synthetic config)."""
    found = []
    for method in discover_methods():
        try:
            plan_invocation(Invocation(method.folder, "base2new_train.sh", ("synthetic", "1")), env)
        except PlanError:
            continue
        found.append(method.trainer)
    return found


def timed_run(args: List[str], env: Dict[str, str]) -> float:
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "tools.benchmark", "run", *args, "--no-progress"], cwd=REPO,
                            env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"`tools.benchmark run {' '.join(args)}` failed:\n"
                         f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return elapsed


def load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", nargs="+", default=["1", "2", "3"])
    parser.add_argument("--slurm", action="store_true", help="also time --launcher slurm (needs a cluster)")
    parser.add_argument("--keep", help="work in this folder (kept) instead of a temporary one")
    parser.add_argument("--json", help="also write the numbers to this JSON file")
    parser.add_argument("--only", nargs="+", choices=["slots1", "slots2", "slurm", "slots1-threads1"],
                        help="time only these configurations (default: slots1 slots2 [slurm])")
    args = parser.parse_args()

    work = Path(args.keep or tempfile.mkdtemp(prefix="bench_runner_"))
    work.mkdir(parents=True, exist_ok=True)
    data = work / "data"
    data.mkdir(exist_ok=True)
    subprocess.run([sys.executable, "-c", "import sys, tools.synthetic.generate as w; w.ensure_world(sys.argv[1])",
                    str(data)], cwd=REPO, check=True)
    base_env = {k: v for k, v in os.environ.items() if k not in script_variables()}
    base_env.update(DATA=str(data), PYTHON=sys.executable, PYTHONUNBUFFERED="1")
    methods = synthetic_methods(dict(base_env, OUTPUT=str(work / "probe")))
    runs = len(methods) * len(args.seeds) * 2
    grid = ["--protocol", "base2new", "--datasets", "synthetic", "--methods", *methods, "--seeds", *args.seeds]
    print(f"grid: {', '.join(methods)} x seeds {' '.join(args.seeds)} x train/test = {runs} runs; "
          f"{os.cpu_count()} CPUs; work folder {work}", flush=True)

    results = []
    available = {
        "slots1": ("local, --slots 1", ["--slots", "1", "--gpus", "none"]),
        "slots1-threads1": ("local, --slots 1 --threads 1", ["--slots", "1", "--threads", "1", "--gpus", "none"]),
        "slots2": ("local, --slots 2", ["--slots", "2", "--gpus", "none"]),
        "slurm": ("slurm, 1 CPU per task", ["--launcher", "slurm", "--cpus-per-run", "1", "--poll", "1"]),
    }
    chosen = args.only or (["slots1", "slots2"] + (["slurm"] if args.slurm else []))
    configs = [available[name] for name in chosen]
    for name, extra in configs:
        tag = name.replace(" ", "").replace(",", "_").replace("-", "")
        env = dict(base_env, SEMPT_CACHE_DIR=str(work / f"cache_{tag}"))
        load_before = load()
        seconds = timed_run(grid + extra + ["--output", str(work / f"out_{tag}")], env)
        results.append({"config": name, "runs": runs, "seconds": round(seconds, 1), "load_before": load_before,
                        "load_after": load()})
        print(f"  {name}: {seconds:.0f} s (load average before {load_before}, after {load()})", flush=True)

    one = results[0]["seconds"]
    print(f"\n| launcher | runs | wall time | speed-up vs {results[0]['config']} | load average (1/5/15 min) "
          "before -> after |")
    print("|---|---|---|---|---|")
    for r in results:
        print(f"| {r['config']} | {r['runs']} | {r['seconds']:.0f} s | {one / r['seconds']:.2f}x | "
              f"{r['load_before']} -> {r['load_after']} |")
    by_config = {name: r["seconds"] for name, r in zip(chosen, results)}
    if "slurm" in by_config and "slots2" in by_config:
        tasks = len(methods) * len(args.seeds)  # one array task per train+test chain
        overhead = (by_config["slurm"] - by_config["slots2"]) / tasks
        print(f"\nSLURM overhead: {overhead:.1f} s per array task ({tasks} tasks, two at a time like the "
              "2 local slots)")
        results.append({"config": "slurm overhead per array task", "seconds": round(overhead, 1), "tasks": tasks})
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
