"""``python -m tools.benchmark run|status|report``: the command line of the benchmark runner.

    export DATA=/path/to/datasets
    python -m tools.benchmark run --protocol base2new --methods CoOp SemPT --datasets caltech101 --seeds 1 2 3
    python -m tools.benchmark run --grid grid.yaml --launcher slurm --partition gpu --gpus-per-run 1
    python -m tools.benchmark status --output output
    python -m tools.benchmark report --output output --format md --published --plots figures/
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import List, Optional, Sequence

from .events import EventLog
from .grid import PROTOCOLS, build_grid, load_grid_file
from .methods import REPO
from .plan import Plan, PlanError, benchmark_dir, build_plan, load_plans, merged_runs, save_plan
from .squeue import QueueUnavailable
from .state import (DONE, FAILED, PENDING, QUEUED, RUNNING, STALE, STATES, RunStatus, excluded_by_stale,
                    move_stale_aside, statuses, totals)


def default_output() -> str:
    """The scripts' output root: ``$OUTPUT``, else ``output`` in the repository (the scripts cd there)."""
    value = os.environ.get("OUTPUT", "output")
    return value if os.path.isabs(value) else str(REPO / value)


def _add_output(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output", default=None,
                        help="output root, the scripts' OUTPUT (default: $OUTPUT, else output/ in the repository)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tools.benchmark", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="plan a grid and run it (locally or on SLURM) until it is finished")
    grid = run.add_argument_group("grid (flags override --grid)")
    grid.add_argument("--grid", help="YAML grid file (see tools/grid/grid.py)")
    grid.add_argument("--protocol", "--protocols", dest="protocols", nargs="+",
                      help=f"one or more of {', '.join(PROTOCOLS)} (xd, dg for short)")
    grid.add_argument("--methods", nargs="+", help="trainer names or script folders (default: all)")
    grid.add_argument("--datasets", nargs="+", help="config names (default: the protocol's benchmark datasets)")
    grid.add_argument("--seeds", nargs="+", type=int, help="default: 1 2 3")
    grid.add_argument("--shots", nargs="+", type=int, help="few-shot shot counts (default: 1 2 4 8 16); "
                      "base-to-novel and cross-dataset use $SHOTS as the scripts do (default 16)")
    grid.add_argument("--opts", nargs="+", metavar="KEY VALUE", help="config overrides passed to every run")
    grid.add_argument("--backbones", nargs="+", metavar="NAME[@PRETRAINED]",
                      help="a backbone axis: every run once per backbone, e.g. ViT-B/16 "
                           "open_clip:ViT-B-16-SigLIP2@webli (default: each config's own)")
    _add_output(run)
    run.add_argument("--launcher", choices=["local", "slurm"], default="local")
    run.add_argument("--dry-run", action="store_true", help="print the plan and what is already done; run nothing")
    run.add_argument("--rerun-stale", action="store_true",
                     help="run the stale runs too (folders made with another config): each old folder is moved "
                          "aside (renamed, never deleted) first; without it they are left as they are")
    run.add_argument("--no-progress", action="store_true", help="no live progress bar")
    local = run.add_argument_group("local launcher")
    local.add_argument("--slots", type=int, help="runs at once (default: one per GPU, 1 on CPU)")
    local.add_argument("--gpus", default="auto",
                       help="GPU ids, one per slot in turn (e.g. 0,1,2,3); auto (default: CUDA_VISIBLE_DEVICES "
                            "or nvidia-smi) or none (CPU)")
    local.add_argument("--threads", type=int, help="CPU threads per run (default: $OMP_NUM_THREADS if exported, else the "
                            "CPUs this process may use / slots)")
    slurm = run.add_argument_group("SLURM launcher (submitit job arrays)")
    slurm.add_argument("--partition", help="default: the cluster's default partition")
    slurm.add_argument("--gpus-per-run", type=int, default=0, help="GPUs per array task (default 0)")
    slurm.add_argument("--cpus-per-run", type=int, help="CPUs per array task")
    slurm.add_argument("--mem-gb", type=float, help="memory per array task (default: the cluster's)")
    slurm.add_argument("--time-min", type=int, default=24 * 60,
                       help="time limit per array task in minutes (default 1440); a task that hits it is "
                            "requeued and its run resumes from its last epoch")
    slurm.add_argument("--array-parallelism", type=int, default=256, help="array tasks running at once")
    slurm.add_argument("--sbatch", action="append", default=[], metavar="KEY=VALUE",
                       help="extra sbatch option, repeatable (e.g. --sbatch account=abc --sbatch qos=high)")
    slurm.add_argument("--slurm-setup", action="append", default=[], metavar="COMMAND",
                       help="shell line run before each task, repeatable (e.g. 'module load cuda')")
    slurm.add_argument("--job-name", default="sempt-benchmark")
    slurm.add_argument("--detach", action="store_true", help="return right after submitting; follow with status")
    slurm.add_argument("--poll", type=float, default=15.0, help="seconds between queue checks while waiting")

    status = sub.add_parser("status", help="done / running / queued / failed / pending / stale of every planned run")
    _add_output(status)
    status.add_argument("--state", nargs="+", choices=STATES, help="list only runs in these states")
    status.add_argument("--totals", action="store_true", help="print the totals only")

    report = sub.add_parser("report", help="result tables (and plots) of everything under the output root")
    _add_output(report)
    report.add_argument("--format", choices=["md", "csv", "tex"], default="md")
    report.add_argument("--protocol", "--protocols", dest="protocols", nargs="+",
                        help="only these protocols (default: every one with results)")
    report.add_argument("--published", action="store_true",
                        help="add the published numbers of the same method, dataset and protocol")
    report.add_argument("--plots", metavar="DIR", help="also write the figures (PNG and SVG) to DIR")
    report.add_argument("--save", metavar="FILE", help="write the tables to FILE instead of printing them")
    return parser


# ------------------------------------------------------------------------ run
def _grid_from_args(args: argparse.Namespace):
    file_values = load_grid_file(args.grid) if args.grid else None
    where = f"--grid {args.grid}" if args.grid else "the command line"
    if args.opts and len(args.opts) % 2:
        raise ValueError(f"--opts takes KEY VALUE pairs, got an odd number: {args.opts}")
    return build_grid(file_values, where, protocols=args.protocols, methods=args.methods, datasets=args.datasets,
                      seeds=args.seeds, shots=args.shots, opts=args.opts, backbones=args.backbones)


def _print_plan(plan: Plan, items: Sequence[RunStatus]) -> None:
    env = " ".join(f"{k}={v}" for k, v in plan.env.items())
    print(f"Plan: {len(plan.runs)} runs under {plan.output}\nScript environment: {env}")
    for item in items:
        run = item.run
        after = f"  (after {', '.join(run.deps)})" if run.deps else ""
        print(f"  [{item.state:7}] {run.invocation.describe()}{after}\n            -> {run.run_id}")
        if item.state == STALE:
            print(f"            {item.detail}")
    print("Totals: " + _totals_line(items))
    _print_stale_note(items)


def _print_stale_note(items: Sequence[RunStatus], moved: bool = False) -> None:
    n = sum(1 for i in items if i.state == STALE)
    if n and not moved:
        print(f"{n} stale run(s): their folders hold runs made with another config, which are neither done "
              "nor run again; add --rerun-stale to move those folders aside and run them, or use another --output")


def _totals_line(items: Sequence[RunStatus]) -> str:
    counts = totals(items)
    shown = [s for s in STATES if s != STALE or counts[s]]  # "stale" only when there are some
    return ", ".join(f"{counts[s]} {s}" for s in shown) + f" (of {len(items)})"


def _print_outcome(items: Sequence[RunStatus]) -> int:
    """The end-of-run summary; the exit code (0 only when every run is done)."""
    print("Finished: " + _totals_line(items))
    for item in items:
        if item.state != DONE:
            where = f"\n      log: {item.log}" if item.log else ""
            print(f"  {item.state}: {item.run.run_id} {item.detail}{where}")
    return 0 if all(i.state == DONE for i in items) else 1


def cmd_run(args: argparse.Namespace) -> int:
    output = os.path.abspath(args.output or default_output())
    grid = _grid_from_args(args)
    plan = build_plan(grid, output)
    events = EventLog(benchmark_dir(output))
    if args.dry_run:
        _print_plan(plan, statuses(plan.runs, events.read(), _queue_or_none(events.read())))
        return 0
    initial = statuses(plan.runs, events.read(), _queue_or_none(events.read()))
    if args.rerun_stale:
        for folder, aside in move_stale_aside(initial):
            print(f"Stale run moved aside: {folder} -> {aside}")
    else:
        _print_stale_note(initial)
    left_out = set(excluded_by_stale(plan.runs, statuses(plan.runs, events.read(), {})))
    runs = [r for r in plan.runs if r.run_id not in left_out]
    path = save_plan(plan)
    events.append("plan", plan=str(path), runs=len(plan.runs), launcher=args.launcher)
    from .progress import Progress

    if args.launcher == "local":
        from .local import LocalOptions, parse_gpus, run_local

        gpus = parse_gpus(args.gpus)
        options = LocalOptions.resolve(args.slots, gpus, args.threads, environ=os.environ)
        done_before = sum(1 for i in statuses(runs, []) if i.state == DONE)
        where = f"GPUs {','.join(options.gpus)}" if options.gpus else "CPU"
        print(f"Running {len(runs)} runs ({done_before} already done) with {options.slots} slot(s) on {where}, "
              f"{options.threads} thread(s) per run (from {options.threads_source}); events: {events.path}",
              flush=True)
        progress = Progress(len(runs), done_before, enabled=not args.no_progress)
        try:
            run_local(runs, plan.env, events, options, progress, cpu_only=gpus == [])
        except KeyboardInterrupt:
            progress.close()
            print("Interrupted; run the same command again to resume.", file=sys.stderr)
            return 130
        progress.close()
        return _print_outcome(statuses(plan.runs, events.read()))

    from .slurm import SlurmOptions, chains_to_submit, current_statuses, parse_sbatch_options, submit, wait_for_jobs
    from .squeue import slurm_available

    if not slurm_available():
        raise ValueError("--launcher slurm: sbatch/squeue not found; run this on a SLURM login node "
                         "(or start the test cluster: bash tools/slurm/local_cluster.sh start)")

    options = SlurmOptions(partition=args.partition, gpus_per_run=args.gpus_per_run, cpus_per_run=args.cpus_per_run,
                           mem_gb=args.mem_gb, time_min=args.time_min, array_parallelism=args.array_parallelism,
                           sbatch=parse_sbatch_options(args.sbatch), setup=list(args.slurm_setup),
                           job_name=args.job_name)
    before = {s.run.run_id: s for s in current_statuses(plan.runs, events)}
    chains = [[r for r in chain if r.run_id not in left_out] for chain in plan.chains()]
    todo = chains_to_submit([c for c in chains if c], before)
    in_hand = sum(1 for s in before.values() if s.state in (RUNNING, QUEUED))
    try:
        ids = submit(todo, plan.env, options, events)
    except Exception as err:  # sbatch refused (bad partition, account, limits): say so, no traceback
        raise ValueError(f"SLURM refused the submission: {err}\nCheck --partition, --gpus-per-run, --mem-gb, "
                         "--time-min and --sbatch against the cluster's limits (sinfo, scontrol show "
                         "partition)") from err
    n_runs = sum(len(c) for c in todo)
    if ids:
        array = sorted({i.split("_")[0] for i in ids})
        print(f"Submitted {len(ids)} array task(s) ({n_runs} runs) as SLURM job {', '.join(array)}; "
              f"{in_hand} run(s) already queued or running; events: {events.path}", flush=True)
    else:
        print(f"Nothing to submit: every run is done, queued or running ({in_hand} queued or running).", flush=True)
    if args.detach:
        print(f"Follow with: python -m tools.benchmark status --output {output}")
        return 0
    done_now = sum(1 for s in before.values() if s.state == DONE)
    progress = Progress(len(plan.runs), done_now, enabled=not args.no_progress)
    try:
        final = wait_for_jobs(plan.runs, events, progress, args.poll, ids)
    except KeyboardInterrupt:
        progress.close()
        print("Stopped waiting; the jobs go on. Follow with: python -m tools.benchmark status "
              f"--output {output}", file=sys.stderr)
        return 130
    progress.close()
    return _print_outcome(final)


# --------------------------------------------------------------------- status
def _queue_or_none(records) -> Optional[dict]:
    """squeue's answer when the event log mentions SLURM jobs; None (unknown) when it cannot be asked."""
    if not any(e.get("job_id") for e in records):
        return {}
    from .squeue import queue_states

    try:
        return queue_states()
    except QueueUnavailable as err:
        print(f"warning: {err}; the state of SLURM jobs is unknown", file=sys.stderr)
        return None


def cmd_status(args: argparse.Namespace) -> int:
    output = os.path.abspath(args.output or default_output())
    plans = load_plans(output)
    if not plans:
        raise ValueError(f"no benchmark plan under {output}/benchmark/plans: start one with "
                         f"python -m tools.benchmark run ... --output {output}")
    runs = merged_runs(plans)
    events = EventLog(benchmark_dir(output))
    records = events.read()
    items = statuses(runs, records, _queue_or_none(records))
    if not args.totals:
        for item in items:
            if args.state and item.state not in args.state:
                continue
            line = f"{item.state:8} {item.run.run_id}"
            if item.detail:
                line += f"  [{item.detail}]"
            if item.log and item.state in (FAILED, RUNNING, PENDING, STALE):
                line += f"\n         log: {item.log}"
            print(line)
    print(f"Totals: {_totals_line(items)}")
    _print_stale_note(items)
    return 0


# --------------------------------------------------------------------- report
def cmd_report(args: argparse.Namespace) -> int:
    from .report import build_report

    output = os.path.abspath(args.output or default_output())
    text = build_report(output, fmt=args.format, protocols=args.protocols, published=args.published,
                        plots_dir=args.plots)
    if args.save:
        Path(args.save).write_text(text)
        print(f"Written to {args.save}")
    else:
        print(text)
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    commands = {"run": cmd_run, "status": cmd_status, "report": cmd_report}
    try:
        return commands[args.command](args)
    except (ValueError, PlanError, QueueUnavailable) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
