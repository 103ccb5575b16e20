"""The built-in default: base-to-novel on the synthetic world for ZeroshotCLIP, CoOp,
KgCoOp and SemPT, seeds 1-3, with the same scripts users run on real data, then the
Base / Novel / HM table.

    python -m tools.run_synthetic                      # everything (minutes on a laptop CPU)
    python -m tools.run_synthetic --seeds 1 --methods coop sempt

Each run is ``bash scripts/<method>/base2new_{train,test}.sh synthetic SEED`` (on the
synthetic world the scripts pick each method's ``synthetic`` config); its console output goes to ``<output>/console/``, the runs' own
logs to ``<output>/base2new/...`` as usual. Finished runs are skipped, so an
interrupted invocation continues where it stopped.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Dict, Sequence

from tqdm import tqdm

REPO = Path(__file__).resolve().parents[1]
METHODS = ("zsclip", "coop", "kgcoop", "sempt")


class RunFailed(RuntimeError):
    pass


def run_script(script: Path, seed: int, env: Dict[str, str], console: Path, extra: Sequence[str] = ()) -> None:
    """``bash script synthetic SEED [KEY VALUE ...]``, its output in ``console``."""
    console.parent.mkdir(parents=True, exist_ok=True)
    with open(console, "w") as out:
        result = subprocess.run(
            ["bash", str(script), "synthetic", str(seed), *extra], cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    if result.returncode != 0:
        tail = "".join(console.read_text(errors="replace").splitlines(keepends=True)[-25:])
        raise RunFailed(f"{script.relative_to(REPO)} synthetic {seed} failed (exit {result.returncode}); "
                        f"full output in {console}:\n{tail}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    parser.add_argument("--data", default=os.environ.get("DATA", "data"),
                        help="dataset root; the world is generated there on first use (default: $DATA or ./data)")
    parser.add_argument("--output", default="output/synthetic", help="output root (default: output/synthetic)")
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1),
                        help="method/seed pairs run at once, each with cores/jobs threads (default: 2)")
    args = parser.parse_args(argv)

    data = Path(args.data).resolve()
    data.mkdir(parents=True, exist_ok=True)
    output = Path(args.output)
    output_abs = output if output.is_absolute() else REPO / output
    threads = max(1, (os.cpu_count() or 1) // max(1, args.jobs))
    env = dict(os.environ, DATA=str(data), OUTPUT=str(output_abs), PYTHON=sys.executable,
               OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    env.pop("CFG", None)  # a CFG left in the shell would override every method's synthetic config

    # Generate the world once before runs start in parallel.
    subprocess.run([sys.executable, "-c", "import datasets.synthetic_world as w; w.ensure_world(__import__('sys').argv[1])",
                    str(data)], cwd=REPO, check=True)

    pairs = [(m, s) for m in args.methods for s in args.seeds]
    bar = tqdm(total=2 * len(pairs), desc="synthetic base-to-novel", unit="run")
    start = time.time()

    def run_pair(pair) -> None:
        method, seed = pair
        for part in ("train", "test"):
            bar.set_postfix_str(f"{method} seed {seed} {part}")
            script = REPO / "scripts" / method / f"base2new_{part}.sh"
            run_script(script, seed, env, output_abs / "console" / f"{method}_seed{seed}_{part}.txt")
            bar.update(1)

    try:
        with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            for future in [pool.submit(run_pair, p) for p in pairs]:
                future.result()
    except RunFailed as err:
        bar.close()
        print(err, file=sys.stderr)
        return 1
    bar.close()
    print(f"All {2 * len(pairs)} runs finished in {time.time() - start:.0f} s\n")

    table = [sys.executable, str(REPO / "parse_test_res.py"), "--base2new", str(output_abs / "base2new"),
             "--markdown", str(output_abs / "base2new_results.md"), "--csv", str(output_abs / "base2new_results.csv")]
    return subprocess.run(table, cwd=REPO).returncode


if __name__ == "__main__":
    sys.exit(main())
