"""Where every run stands: done, running, queued, failed, pending or stale.

- **done**: finished as ``dassl/run_record.py`` defines it (the run folder's log holds the
  final ``=> result`` block and its run record has the planned command's config), the very
  test of ``finished`` in ``scripts/lib.sh`` (so the scripts and the runner agree);
- **stale**: the run folder holds a run made with another config (e.g. other ``--opts``):
  it is neither done nor run again unless asked (``run --rerun-stale`` moves it aside);
- **running**: a process holds the run folder's lock (``train.py`` holds it for the whole
  run), or a live launcher has just started the run;
- **queued**: waiting for a slot of a live local runner, or in a SLURM job that is
  pending or busy with an earlier run of its chain;
- **failed**: the last attempt failed (with its logs), or its SLURM job left the queue
  before the run finished (cancelled, timed out, node failure);
- **pending**: nothing under way: never started, interrupted, or skipped because a run it
  needs failed. The next ``run`` runs it (resuming an interrupted one).
"""
from __future__ import annotations

import functools
import os
import os.path as osp
import socket
import sys
from collections import Counter
from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from dassl import run_record
from dassl.run_lock import lock_holder

from .events import latest_by_run
from .methods import REPO
from .plan import Run

DONE, RUNNING, QUEUED, FAILED, PENDING, STALE = "done", "running", "queued", "failed", "pending", "stale"
STATES = (DONE, RUNNING, QUEUED, FAILED, PENDING, STALE)
# SLURM job states in which a job still holds or waits for resources.
SLURM_ACTIVE = {"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "REQUEUED", "REQUEUE_HOLD",
                "REQUEUE_FED", "RESIZING", "SIGNALING", "STAGE_OUT", "STOPPED"}


def is_finished(outdir: str) -> bool:
    """``finished DIR`` of ``scripts/lib.sh`` (the folder alone): its log holds the final
    result. Stale folders are kept out of the launchers beforehand (``cli.cmd_run``)."""
    return run_record.run_state(outdir).finished


@functools.lru_cache(maxsize=None)
def _planned_args(argv: Tuple[str, ...]):
    """The parsed arguments of a planned ``train.py`` command (``PYTHON train.py ARGS``), its
    config files resolved from the repository root, where the scripts run it."""
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    import train  # no torch: only its command line

    args = train.build_parser().parse_args(list(argv[2:]))
    for name in ("config_file", "dataset_config_file"):
        path = getattr(args, name)
        if path and not osp.isabs(path):
            setattr(args, name, str(REPO / path))
    return args


@functools.lru_cache(maxsize=None)
def _planned_config(argv: Tuple[str, ...]):
    import train

    return train.setup_cfg(_planned_args(argv))  # imports every trainer: only when a digest differs


def planned_state(run: Run) -> run_record.RunState:
    """The state of ``run``'s folder judged against its planned command (``train.command_state``)."""
    import train

    argv = tuple(run.argv)
    if len(argv) < 2:  # not a train.py command: the folder alone
        return run_record.run_state(run.outdir)
    return train.command_state(run.outdir, _planned_args(argv), lambda args: _planned_config(argv))


def run_log(outdir: str) -> Optional[str]:
    path = osp.join(outdir, "log.txt")
    return path if osp.isfile(path) else None


def _process_alive(event: Mapping) -> bool:
    """Whether the launcher process that wrote ``event`` still runs (only knowable on its host)."""
    if event.get("host") != socket.gethostname():
        return False
    try:
        os.kill(int(event["pid"]), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass
class RunStatus:
    run: Run
    state: str
    detail: str = ""
    log: str = ""  # where to look: the console log of the last attempt, or the run's log.txt


def run_status(run: Run, last: Optional[Mapping], queue: Optional[Mapping[str, str]]) -> RunStatus:
    """The state of ``run`` from its folder, its lock, its last event and the SLURM queue
    (``queue`` None: squeue could not be asked, so a job's state is unknown)."""
    folder = planned_state(run)
    if folder.finished:
        return RunStatus(run, DONE, log=run_log(run.outdir) or "")
    if folder.stale:
        return RunStatus(run, STALE, "made with another config: " + "; ".join(map(str, folder.diffs)),
                         run_log(run.outdir) or "")
    holder = lock_holder(run.outdir)
    if holder is not None:
        return RunStatus(run, RUNNING, holder, run_log(run.outdir) or "")
    if last is None:
        return RunStatus(run, PENDING)
    kind = last.get("event")
    job = last.get("job_id", "")
    console = last.get("console", "")
    if job and kind in ("submit", "start", "requeue", "interrupt"):
        if queue is None:
            return RunStatus(run, PENDING, f"SLURM job {job}: state unknown (squeue could not be asked)",
                             last.get("stdout", console))
        job_state = queue.get(job)
        if job_state in SLURM_ACTIVE:
            if kind == "start" and job_state == "RUNNING":
                return RunStatus(run, RUNNING, f"SLURM job {job}", console)
            return RunStatus(run, QUEUED, f"SLURM job {job} ({job_state.lower()})", last.get("stdout", console))
        if kind != "interrupt":
            where = last.get("stdout") or console
            return RunStatus(run, FAILED, f"SLURM job {job} left the queue before this run finished "
                                          "(cancelled, timed out or failed)", where)
    if kind in ("start", "queue") and _process_alive(last):
        return RunStatus(run, RUNNING if kind == "start" else QUEUED, f"local runner pid {last['pid']}", console)
    if kind == "fail":
        return RunStatus(run, FAILED, last.get("detail", ""), last.get("console") or last.get("log", ""))
    if kind == "skip":
        return RunStatus(run, PENDING, f"skipped: {last.get('reason', '')}")
    if kind == "interrupt":
        return RunStatus(run, PENDING, f"interrupted: {last.get('reason', '')}; the next run resumes it", console)
    if kind in ("start", "queue"):
        return RunStatus(run, PENDING, "its launcher stopped before it finished; the next run resumes it", console)
    return RunStatus(run, PENDING)


def job_ids(events: Sequence[Mapping]) -> List[str]:
    return sorted({e["job_id"] for e in events if e.get("job_id")})


def statuses(runs: Sequence[Run], events: Sequence[Mapping], queue: Optional[Mapping[str, str]] = None
             ) -> List[RunStatus]:
    """Every run's state; ``queue``: squeue's answer, or None when it could not be asked."""
    relevant = {"queue", "submit", "start", "done", "fail", "skip", "elsewhere", "interrupt", "requeue"}
    last = latest_by_run(list(events), relevant)
    return [run_status(run, last.get(run.run_id), queue) for run in runs]


def excluded_by_stale(runs: Sequence[Run], items: Sequence[RunStatus]) -> List[str]:
    """The ids of the stale runs and of every run that needs one (plan order)."""
    out = {i.run.run_id for i in items if i.state == STALE}
    for run in runs:
        if any(d in out for d in run.deps):
            out.add(run.run_id)
    return [r.run_id for r in runs if r.run_id in out]


def move_stale_aside(items: Sequence[RunStatus]) -> List[Tuple[str, str]]:
    """``run --rerun-stale``: rename each stale run folder (never delete it) as ``train.py
    --restart`` does; ``(folder, where it went)`` of each. A folder in use is left alone."""
    from dassl.run_lock import RunLock, RunLockedError

    moved = []
    for item in items:
        if item.state != STALE:
            continue
        lock = RunLock(item.run.outdir)
        try:
            lock.acquire()
        except RunLockedError as err:
            print(f"warning: {err}", file=sys.stderr)
            continue
        try:
            aside = run_record.aside_path(item.run.outdir)
            os.rename(item.run.outdir, aside)
        finally:
            lock.release()
        moved.append((item.run.outdir, aside))
    return moved


def totals(items: Sequence[RunStatus]) -> Dict[str, int]:
    counts = Counter(s.state for s in items)
    return {state: counts.get(state, 0) for state in STATES}
