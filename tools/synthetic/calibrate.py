"""Measure the synthetic world against the targets it is calibrated to: the baselines must
behave, relative to each other, as they do on the real benchmarks (datasets/SYNTHETIC.md,
"Calibration").

    python -m tools.synthetic.calibrate                 # seeds 1-3, minutes on 2 cores
    python -m tools.synthetic.calibrate --markdown calibration.md

Base-to-novel, 16 shots, on the test split, means of the seeds: zero-shot CLIP, the linear
probe, CoOp, KgCoOp, the description classifier (CuPL) and PromptSRC run through their
benchmark scripts with ``python -m tools.benchmark run`` (output under ``--output``; finished
runs are reused). Prints each target, the real value it mirrors, the measured value and
whether it holds. SemPT is not part of the calibration.
"""
from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tools.results import collect_base2new, harmonic_mean  # noqa: E402
from tools.grid import cli as benchmark  # noqa: E402

# The trainers the targets compare (SemPT is never one of them).
BASELINES = ("ZeroshotCLIP", "LinearProbe", "CoOp", "KgCoOp", "CuPL", "PromptSRC")
DESCRIPTIONS = "CuPL"  # the description classifier of target 5

Results = Dict[str, Dict[str, Optional[float]]]  # method -> {"base", "new"} -> mean accuracy


@dataclass(frozen=True)
class Target:
    number: str
    text: str
    real: str  # the real-benchmark behaviour it mirrors (11-dataset averages, ViT-B/16)
    measure: Callable[[Results], Tuple[str, Optional[bool]]]  # (measured, holds); None: not measured


def _get(r: Results, method: str, half: str) -> Optional[float]:
    return r.get(method, {}).get(half)


def _hm(r: Results, method: str) -> Optional[float]:
    b, n = _get(r, method, "base"), _get(r, method, "new")
    return None if b is None or n is None else harmonic_mean(b, n)


def _missing(*values: Optional[float]) -> bool:
    return any(v is None for v in values)


def _zero_shot_level(r: Results):
    b, n = _get(r, "ZeroshotCLIP", "base"), _get(r, "ZeroshotCLIP", "new")
    if _missing(b, n):
        return "not measured", None
    return f"{b:.1f} / {n:.1f}", min(b, n) >= 35.0


def _coop_base(r: Results):
    zs, coop, lp = (_get(r, m, "base") for m in ("ZeroshotCLIP", "CoOp", "LinearProbe"))
    if _missing(zs, coop, lp):
        return "not measured", None
    return (f"CoOp {coop:.1f} vs zero-shot {zs:.1f} ({coop - zs:+.1f}) and linear probe {lp:.1f} ({coop - lp:+.1f})",
            coop >= zs + 10 and abs(coop - lp) <= 8)


def _coop_novel(r: Results):
    zs, coop = _get(r, "ZeroshotCLIP", "new"), _get(r, "CoOp", "new")
    if _missing(zs, coop):
        return "not measured", None
    return f"CoOp {coop:.1f} vs zero-shot {zs:.1f} ({coop - zs:+.1f})", coop <= zs - 3


def _kgcoop_novel(r: Results):
    kg, coop = _get(r, "KgCoOp", "new"), _get(r, "CoOp", "new")
    if _missing(kg, coop):
        return "not measured", None
    return f"KgCoOp {kg:.1f} vs CoOp {coop:.1f} ({kg - coop:+.1f})", kg >= coop + 3


def _descriptions(r: Results):
    gaps = []
    for half in ("base", "new"):
        d, zs = _get(r, DESCRIPTIONS, half), _get(r, "ZeroshotCLIP", half)
        if _missing(d, zs):
            return "not measured", None
        gaps.append((half, d, d - zs))
    text = "; ".join(f"{'novel' if h == 'new' else h} {d:.1f} ({g:+.1f})" for h, d, g in gaps)
    return text, all(-2 <= g <= 6 for _, _, g in gaps)


def _promptsrc(r: Results):
    src, coop = _hm(r, "PromptSRC"), _hm(r, "CoOp")
    if _missing(src, coop):
        return "not measured", None
    return f"HM {src:.1f} vs CoOp {coop:.1f} ({src - coop:+.1f})", src >= coop


TARGETS: Tuple[Target, ...] = (
    Target("1", "zero-shot with names >= 35 on each half", "zero-shot CLIP 69.3 / 74.2: names are grounded",
           _zero_shot_level),
    Target("2", "CoOp base >= zero-shot base + 10, and within 8 of the 16-shot linear probe",
           "CoOp 82.7 vs 69.3 (+13.4); CoOp close to the linear probe at 16 shots (CoOp paper)", _coop_base),
    Target("3", "CoOp novel <= zero-shot novel - 3", "CoOp 63.2 vs 74.2 (-11.0)", _coop_novel),
    Target("4", "KgCoOp novel >= CoOp novel + 3", "KgCoOp 73.6 vs CoOp 63.2 (+10.4)", _kgcoop_novel),
    Target("5", "descriptions (CuPL) within [-2, +6] of name zero-shot, each half",
           "LLM descriptions add a few points to zero-shot (CuPL, DCLIP)", _descriptions),
    Target("6", "PromptSRC HM >= CoOp HM", "PromptSRC 79.97 vs CoOp 71.66", _promptsrc),
)


# ----------------------------------------------------------------------------- the table

def measure(data: Path, output: Path, seeds: Sequence[int], slots: int, threads: Optional[int] = None) -> Results:
    argv = ["run", "--protocol", "base2new", "--datasets", "synthetic", "--methods", *BASELINES,
            "--seeds", *map(str, seeds), "--output", str(output), "--slots", str(slots), "--no-progress"]
    if threads:
        argv += ["--threads", str(threads)]
    os.environ["DATA"] = str(data)
    if benchmark.main(argv) != 0:
        raise SystemExit(f"a benchmark run failed; `python -m tools.benchmark status --output {output}` says which")
    results: Results = {}
    for (trainer, _cfg, shots), datasets in collect_base2new(str(output / "base2new")).items():
        phases = datasets.get("synthetic")
        if shots != "shots_16" or phases is None or trainer not in BASELINES:
            continue
        wanted = {f"seed{s}" for s in seeds}
        results[trainer] = {half: (sum(v[k] for k in wanted) / len(wanted) if wanted <= set(v) else None)
                            for half, v in phases.items()}
    return results


def table(results: Results) -> List[List[str]]:
    rows = []
    for t in TARGETS:
        measured, holds = t.measure(results)
        rows.append([t.number, t.text, t.real, measured, {True: "yes", False: "NO", None: "-"}[holds]])
    return rows


def accuracy_rows(results: Results) -> List[List[str]]:
    def cell(v: Optional[float]) -> str:
        return "-" if v is None else f"{v:.1f}"

    rows = []
    for name in BASELINES:
        if name in results:
            b, n = results[name].get("base"), results[name].get("new")
            rows.append([name, cell(b), cell(n), cell(_hm(results, name))])
    return rows


def main(argv: Optional[Sequence[str]] = None) -> int:
    from tabulate import tabulate

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=os.environ.get("DATA", "data"),
                        help="dataset root; the world is generated there on first use (default: $DATA or ./data)")
    parser.add_argument("--output", default="output/calibration", help="output root (default: output/calibration)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    parser.add_argument("--slots", type=int, default=min(2, os.cpu_count() or 1), help="runs at once")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads per run (default: cores / slots)")
    parser.add_argument("--markdown", default="", help="also write the two tables to this file")
    args = parser.parse_args(argv)
    output = Path(args.output) if Path(args.output).is_absolute() else REPO / args.output
    results = measure(Path(args.data).resolve(), output, args.seeds, args.slots, args.threads)

    seeds = ", ".join(map(str, args.seeds))
    accuracies = tabulate(accuracy_rows(results), headers=["method", "Base", "Novel", "HM"], tablefmt="github",
                          disable_numparse=True)
    targets = tabulate(table(results), headers=["#", "target", "real (11 datasets, ViT-B/16)", "measured", "holds"],
                       tablefmt="github", disable_numparse=True)
    text = (f"Base-to-novel test accuracy, 16 shots, mean of seeds {seeds}:\n\n{accuracies}\n\n"
            f"Calibration targets:\n\n{targets}\n")
    print("\n" + text)
    if args.markdown:
        Path(args.markdown).write_text(text)
        print(f"Markdown written to {args.markdown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
