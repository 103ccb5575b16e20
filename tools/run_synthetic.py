"""The built-in default: base-to-novel on the synthetic world for every method, seeds 1-3,
with the same scripts users run on real data, then one side-by-side Base / Novel / HM table.

    python -m tools.run_synthetic                      # everything (minutes on a laptop CPU)
    python -m tools.run_synthetic --seeds 1 --methods coop sempt

The runs are the benchmark runner's (``python -m tools.benchmark run --protocol base2new
--datasets synthetic``, called in this process): each is ``bash scripts/<method>/
base2new_{train,test}.sh synthetic SEED`` (on the synthetic world the scripts pick each
method's ``synthetic`` config), a test after its training, ``--slots`` at once, a failure
reported with its log without stopping the others. Finished runs are skipped, so an
interrupted invocation continues where it stopped. The methods are the runner's
(``tools/grid/methods.py``: every ``scripts/<folder>/method.sh``), so a method added
with its scripts runs here too; ``--methods`` takes script folders or trainer names.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from pathlib import Path
from typing import Dict, Iterator, List, Sequence

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tools.grid import cli as benchmark_cli  # noqa: E402
from tools.grid.methods import discover_methods, select_methods  # noqa: E402
from tools.results import report_base2new  # noqa: E402
from tools.synthetic import generate as synthetic_world  # noqa: E402


def method_folders() -> List[str]:
    """Every method with benchmark scripts, as the runner finds them (the table orders the
    rows by ``tools.results.METHOD_ORDER``)."""
    return [m.folder for m in discover_methods()]


@contextlib.contextmanager
def environment(changes: Dict[str, str], removed: Sequence[str]) -> Iterator[None]:
    """``os.environ`` with ``changes`` and without ``removed`` (the runner, called in this
    process, reads the scripts' variables from it), restored afterwards."""
    saved = {key: os.environ.get(key) for key in [*changes, *removed]}
    os.environ.update(changes)
    for key in removed:
        os.environ.pop(key, None)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", nargs="+", default=None, metavar="METHOD",
                        help="script folders or trainer names (default: every method with scripts: "
                             + " ".join(method_folders()) + ")")
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
    try:
        methods = [m.folder for m in select_methods(args.methods or [], discover_methods())]
    except ValueError as err:
        parser.error(str(err))

    data = Path(args.data).resolve()
    data.mkdir(parents=True, exist_ok=True)
    output = Path(args.output)
    output_abs = output if output.is_absolute() else REPO / output

    # Generate the world once, before runs start in parallel (each would otherwise write it,
    # safely but in vain).
    synthetic_world.ensure_world(str(data))
    start = time.time()
    run = ["run", "--protocol", "base2new", "--datasets", "synthetic", "--methods", *methods,
           "--seeds", *map(str, args.seeds), "--output", str(output_abs), "--slots", str(args.slots),
           *(["--threads", str(args.threads)] if args.threads else [])]
    # A CFG left in the shell would override every method's synthetic config.
    with environment({"DATA": str(data)}, removed=["CFG"]):
        code = benchmark_cli.main(run)
    print(f"Finished in {time.time() - start:.0f} s\n")

    try:
        report_base2new(str(output_abs / "base2new"), "accuracy", csv_path=str(output_abs / "base2new_results.csv"),
                        md_path=str(output_abs / "base2new_results.md"))
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return code or 1
    return code

if __name__ == "__main__":
    sys.exit(main())
