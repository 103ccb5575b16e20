"""The built-in default: base-to-novel on the synthetic world for every method, seeds 1-3,
with the same scripts users run on real data, then one side-by-side Base / Novel / HM table.

    python -m tools.run_synthetic                      # everything (minutes on a laptop CPU)
    python -m tools.run_synthetic --seeds 1 --methods coop sempt

The runs are the benchmark runner's (``python -m tools.benchmark run --protocol base2new
--datasets synthetic``): each is ``bash scripts/<method>/base2new_{train,test}.sh synthetic
SEED`` (on the synthetic world the scripts pick each method's ``synthetic`` config), a test
after its training, ``--slots`` at once, a failure reported with its log without stopping
the others. Finished runs are skipped, so an interrupted invocation continues where it
stopped.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Sequence

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tools.synthetic import generate as synthetic_world  # noqa: E402

# Every method with benchmark scripts (the table orders them by parse_test_res.METHOD_ORDER).
METHODS = ("zsclip", "dclip", "cupl", "linear_probe", "coop", "cocoop", "kgcoop", "prograd", "tcp",
           "ivlp", "maple", "promptsrc", "sempt")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    parser.add_argument("--data", default=os.environ.get("DATA", "data"),
                        help="dataset root; the world is generated there on first use (default: $DATA or ./data)")
    parser.add_argument("--output", default="output/synthetic", help="output root (default: output/synthetic)")
    parser.add_argument("--slots", "--jobs", type=int, default=min(2, os.cpu_count() or 1),
                        help="runs at once (default: 2)")
    parser.add_argument("--threads", type=int,
                        help="CPU threads per run (default: $OMP_NUM_THREADS if exported, else the CPUs this "
                             "process may use / slots; dassl.cpu_allocation)")
    args = parser.parse_args(argv)

    data = Path(args.data).resolve()
    data.mkdir(parents=True, exist_ok=True)
    output = Path(args.output)
    output_abs = output if output.is_absolute() else REPO / output
    env = dict(os.environ, DATA=str(data))
    env.pop("CFG", None)  # a CFG left in the shell would override every method's synthetic config

    # Generate the world once, before runs start in parallel (each would otherwise write it,
    # safely but in vain).
    synthetic_world.ensure_world(str(data))
    start = time.time()
    run = [sys.executable, "-m", "tools.benchmark", "run", "--protocol", "base2new", "--datasets", "synthetic",
           "--methods", *args.methods, "--seeds", *map(str, args.seeds), "--output", str(output_abs),
           "--slots", str(args.slots), *(["--threads", str(args.threads)] if args.threads else [])]
    code = subprocess.run(run, cwd=REPO, env=env).returncode
    print(f"Finished in {time.time() - start:.0f} s\n")

    table = [sys.executable, str(REPO / "parse_test_res.py"), "--base2new", str(output_abs / "base2new"),
             "--markdown", str(output_abs / "base2new_results.md"), "--csv", str(output_abs / "base2new_results.csv")]
    table_code = subprocess.run(table, cwd=REPO).returncode
    return code or table_code


if __name__ == "__main__":
    sys.exit(main())
