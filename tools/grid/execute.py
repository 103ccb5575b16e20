"""Execute one run: its script call, with the planned environment, logged and classified.

The script itself runs (``bash scripts/<method>/<script>.sh ARGS``), so a run here is
exactly a run by hand. Its console output (the script's messages and the run's own
output) is appended to ``<output>/benchmark/console/<run id>.log``, one section per
attempt; ``train.py`` writes its own ``log.txt`` in the run folder as always.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional, Set

from dassl.process_tree import DIE_WITH_PARENT_ENV, parent_death_preexec
from dassl.run_lock import RUN_LOCKED_EXIT_CODE, lock_holder

from .events import EventLog
from .methods import REPO
from .plan import Run, benchmark_dir, child_environ
from .state import is_finished, run_log

DONE, FAILED, ELSEWHERE, INTERRUPTED = "done", "failed", "elsewhere", "interrupted"


@dataclass
class Outcome:
    """How a run ended: ``done``, ``failed``, ``elsewhere`` (another process runs it) or ``interrupted``."""

    state: str
    rc: int
    seconds: float
    detail: str = ""


def console_path(output: str, run_id: str) -> Path:
    return benchmark_dir(output) / "console" / f"{run_id}.log"


def killed_by(rc: int) -> Optional[int]:
    """The signal that ended the script: negative return codes, or bash's 128 + N."""
    if rc < 0:
        return -rc
    if 128 < rc < 128 + 65:
        return rc - 128
    return None


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def classify(run: Run, rc: int, seconds: float, console: Path) -> Outcome:
    """The outcome of a script call from its exit code and the run folder."""
    finished = is_finished(run.outdir)
    if rc == 0 and finished:
        return Outcome(DONE, rc, seconds)
    if rc == RUN_LOCKED_EXIT_CODE:
        return Outcome(ELSEWHERE, rc, seconds, "another process holds the run folder's lock")
    if finished:
        # Another process finished it between our check and our start (train.py refused to redo it).
        return Outcome(DONE, rc, seconds, "finished by another process")
    sig = killed_by(rc)
    if sig is not None:
        return Outcome(INTERRUPTED, rc, seconds, f"stopped by {_signal_name(sig)}")
    if rc == 0:
        return Outcome(FAILED, rc, seconds, f"the script exited 0 but {run.outdir}/log.txt holds no result")
    return Outcome(FAILED, rc, seconds, f"exit code {rc}; see {console}")


class ProcessGroups:
    """The script processes a launcher has started, to stop them all on Ctrl-C or SIGTERM.

    Each script runs in its own session: a signal meant for the launcher does not kill a
    run behind the launcher's back, and :meth:`stop_all` reaches the whole process tree
    (bash and the train.py it started), which signalling bash alone would not.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._processes: Set[subprocess.Popen] = set()

    def add(self, process: subprocess.Popen) -> None:
        with self._lock:
            self._processes.add(process)

    def discard(self, process: subprocess.Popen) -> None:
        with self._lock:
            self._processes.discard(process)

    def stop_all(self, sig: int = signal.SIGTERM) -> None:
        with self._lock:
            processes = list(self._processes)
        for process in processes:
            stop_process_group(process, sig)


def stop_process_group(process: subprocess.Popen, sig: int = signal.SIGTERM, grace_s: float = 30.0) -> None:
    """Signal the script's whole process group; SIGKILL it if it is still there after ``grace_s``."""
    try:
        os.killpg(process.pid, sig)
    except ProcessLookupError:
        return
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def execute_run(run: Run, plan_env: Mapping[str, str], events: EventLog,
                extra_env: Optional[Mapping[str, str]] = None, groups: Optional[ProcessGroups] = None,
                **event_fields: Any) -> Outcome:
    """Run ``run``'s script once and record ``start`` and its outcome in ``events``."""
    output = plan_env["OUTPUT"]
    console = console_path(output, run.run_id)
    console.parent.mkdir(parents=True, exist_ok=True)
    events.append("start", run=run.run_id, console=str(console), **event_fields)
    start = time.time()
    with open(console, "a") as out:
        out.write(f"===== {run.invocation.describe()} | {time.strftime('%Y-%m-%d %H:%M:%S')} | "
                  f"{socket.gethostname()} pid {os.getpid()} =====\n")
        out.flush()
        # The script and its train.py end with this process, even on kill -9 (dassl.process_tree).
        env = child_environ(plan_env, {**(extra_env or {}), DIE_WITH_PARENT_ENV: "1"})
        process = subprocess.Popen(run.invocation.command(), cwd=REPO, env=env, stdout=out,
                                   stderr=subprocess.STDOUT, start_new_session=True,
                                   preexec_fn=parent_death_preexec())
        if groups is not None:
            groups.add(process)
        try:
            rc = process.wait()
        except BaseException as exc:  # SLURM's preemption handler exiting this process, or Ctrl-C
            stop_process_group(process)
            events.append("interrupt", run=run.run_id, reason=f"{type(exc).__name__} in the launcher",
                          **event_fields)
            raise
        finally:
            if groups is not None:
                groups.discard(process)
    outcome = classify(run, rc, time.time() - start, console)
    common = dict(run=run.run_id, **event_fields)
    if outcome.state == DONE:
        events.append("done", seconds=round(outcome.seconds, 1), detail=outcome.detail, **common)
    elif outcome.state == ELSEWHERE:
        events.append("elsewhere", holder=lock_holder(run.outdir) or "", **common)
    elif outcome.state == INTERRUPTED:
        events.append("interrupt", reason=outcome.detail, **common)
    else:
        log = run_log(run.outdir)
        events.append("fail", rc=rc, console=str(console), log=str(log) if log else "", detail=outcome.detail,
                      **common)
    return outcome


def record_skip(run: Run, failed_dep: str, events: EventLog, **event_fields: Any) -> None:
    events.append("skip", run=run.run_id, reason=f"needs {failed_dep}, which did not finish", **event_fields)

