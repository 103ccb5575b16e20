"""The local launcher: N slots on this machine, each run pinned to one GPU or a share of the CPU.

A run starts when a slot is free and every run it needs is done. A failed run does not
stop the others; the runs that need it are skipped and reported. A run whose folder
another process holds (a second ``run`` on the same grid, a script started by hand, a
SLURM job) is left to that process and watched until its lock is released.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Sequence

from dassl.cpu_allocation import decide_threads, thread_environ
from dassl.run_lock import lock_holder

from .events import EventLog
from .execute import DONE, ELSEWHERE, FAILED, INTERRUPTED, Outcome, ProcessGroups, execute_run, record_skip
from .plan import Run
from .progress import Progress
from .state import is_finished

WAITING, RUNNING, SKIPPED = "waiting", "running", "skipped"


def detect_gpus(environ: Optional[Mapping[str, str]] = None) -> List[str]:
    """The GPUs this process may use: ``CUDA_VISIBLE_DEVICES`` if set, else ``nvidia-smi``'s list."""
    environ = os.environ if environ is None else environ
    visible = environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        ids = [g.strip() for g in visible.split(",") if g.strip()]
        return [] if ids and ids[0].startswith("-") else ids  # "-1": no GPU
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        result = subprocess.run(["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"],
                                capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [line.strip() for line in result.stdout.splitlines() if line.strip()] if result.returncode == 0 else []


def parse_gpus(value: str) -> Optional[List[str]]:
    """``--gpus``: ``auto`` (None: detect), ``none`` (CPU only) or a comma list ``0,1,3``."""
    value = value.strip().lower()
    if value == "auto":
        return None
    if value in ("none", "cpu", ""):
        return []
    ids = [g.strip() for g in value.split(",") if g.strip()]
    if not all(g.isdigit() for g in ids):
        raise ValueError(f"--gpus {value}: expected auto, none or GPU indices like 0,1,2")
    return ids


@dataclass
class LocalOptions:
    slots: int
    gpus: List[str] = field(default_factory=list)  # empty: CPU
    threads: int = 1  # CPU threads per slot
    poll_s: float = 2.0
    threads_source: str = ""  # where the thread count came from (printed at the start)

    @classmethod
    def resolve(cls, slots: Optional[int], gpus: Optional[List[str]], threads: Optional[int],
                cpus: Optional[int] = None, poll_s: float = 2.0,
                environ: Optional[Mapping[str, str]] = None) -> "LocalOptions":
        """Defaults: one slot per GPU (or one on CPU); threads per run as
        :func:`dassl.cpu_allocation.decide_threads` says (``threads``, else an exported
        ``OMP_NUM_THREADS`` in ``environ``, else the allocation's ``cpus`` divided between the
        slots). ``environ`` None: no environment is consulted (the command line passes its own)."""
        if gpus is None:
            gpus = detect_gpus()
        if slots is None:
            slots = max(1, len(gpus))
        if slots < 1:
            raise ValueError(f"--slots {slots}: need at least 1")
        decided = decide_threads(threads, slots, {} if environ is None else environ, affinity=cpus)
        return cls(slots=slots, gpus=list(gpus), threads=decided.count, poll_s=poll_s,
                   threads_source=decided.source)

    def slot_env(self, slot: int, cpu_only: bool) -> Dict[str, str]:
        """The environment of a run in ``slot``: its thread count and its one GPU (or none)."""
        env = thread_environ(self.threads)
        if self.gpus:
            # One GPU per run: the engine then has exactly one device and never spreads a model.
            env["CUDA_VISIBLE_DEVICES"] = self.gpus[slot % len(self.gpus)]
        elif cpu_only:
            env["CUDA_VISIBLE_DEVICES"] = ""
        return env


@dataclass
class LocalResult:
    states: Dict[str, str]  # run id -> done / failed / skipped / interrupted
    outcomes: Dict[str, Outcome]
    skipped_because: Dict[str, str]

    @property
    def ok(self) -> bool:
        return all(state == DONE for state in self.states.values())


def _raise_interrupt(signum, frame) -> None:  # SIGTERM ends the launcher like Ctrl-C
    raise KeyboardInterrupt


def run_local(runs: Sequence[Run], plan_env: Mapping[str, str], events: EventLog, options: LocalOptions,
              progress: Optional[Progress] = None, cpu_only: bool = False) -> LocalResult:
    """Run ``runs`` (in dependency order) with ``options.slots`` at once; return how each ended."""
    by_id = {r.run_id: r for r in runs}
    states: Dict[str, str] = {r.run_id: DONE if is_finished(r.outdir) else WAITING for r in runs}
    outcomes: Dict[str, Outcome] = {}
    skipped_because: Dict[str, str] = {}
    watched: Dict[str, Run] = {}  # run elsewhere: wait for its lock to go
    events.append("queue", runs=[rid for rid, s in states.items() if s == WAITING], launcher="local",
                  slots=options.slots, gpus=options.gpus, threads=options.threads)
    free_slots = list(range(options.slots))
    running: Dict[Future, tuple] = {}
    groups = ProcessGroups()
    pool = ThreadPoolExecutor(max_workers=options.slots, thread_name_prefix="slot")
    # Only the main thread may install handlers (a caller in another thread keeps its own).
    in_main = threading.current_thread() is threading.main_thread()
    previous_sigterm = signal.signal(signal.SIGTERM, _raise_interrupt) if in_main else None

    def report() -> None:
        if progress is not None:
            counts = list(states.values())
            progress.update(done=counts.count(DONE), failed=sum(s in (FAILED, INTERRUPTED, SKIPPED) for s in counts),
                            running=counts.count(RUNNING) + counts.count(ELSEWHERE))

    def settle_skips() -> None:
        changed = True
        while changed:  # a skip can cascade down a chain
            changed = False
            for run in runs:
                if states[run.run_id] != WAITING:
                    continue
                bad = [d for d in run.deps if states[d] in (FAILED, SKIPPED, INTERRUPTED)]
                if bad:
                    states[run.run_id] = SKIPPED
                    skipped_because[run.run_id] = bad[0]
                    record_skip(run, bad[0], events, launcher="local")
                    changed = True

    try:
        while True:
            settle_skips()
            for run_id in list(watched):
                if lock_holder(by_id[run_id].outdir) is None:
                    del watched[run_id]
                    states[run_id] = DONE if is_finished(by_id[run_id].outdir) else WAITING
            for run in runs:
                if not free_slots:
                    break
                if states[run.run_id] != WAITING or any(states[d] != DONE for d in run.deps):
                    continue
                if is_finished(run.outdir):
                    states[run.run_id] = DONE
                    continue
                holder = lock_holder(run.outdir)
                if holder is not None:
                    states[run.run_id] = ELSEWHERE
                    watched[run.run_id] = run
                    events.append("elsewhere", run=run.run_id, holder=holder, launcher="local")
                    continue
                slot = free_slots.pop(0)
                env = options.slot_env(slot, cpu_only)
                fields = {"launcher": "local", "slot": slot, "threads": options.threads}
                if options.gpus:
                    fields["gpu"] = env["CUDA_VISIBLE_DEVICES"]
                future = pool.submit(execute_run, run, plan_env, events, env, groups, **fields)
                running[future] = (run, slot)
                states[run.run_id] = RUNNING
            report()
            if not running and not watched:
                break
            finished, _ = wait(list(running), timeout=options.poll_s, return_when=FIRST_COMPLETED)
            for future in finished:
                run, slot = running.pop(future)
                free_slots.append(slot)
                free_slots.sort()
                outcome = future.result()
                outcomes[run.run_id] = outcome
                if outcome.state == ELSEWHERE:
                    states[run.run_id] = ELSEWHERE
                    watched[run.run_id] = run
                else:
                    states[run.run_id] = outcome.state
                    if outcome.state != DONE and progress is not None:
                        progress.write(f"{outcome.state}: {run.run_id} ({outcome.detail})")
    except KeyboardInterrupt:
        if progress is not None:
            progress.write("Interrupted: stopping the running runs (they resume on the next run)")
        groups.stop_all(signal.SIGTERM)
        raise
    finally:
        pool.shutdown(wait=True)
        if in_main:
            signal.signal(signal.SIGTERM, previous_sigterm)
        report()
    for run_id, state in states.items():
        if state == WAITING:  # cannot happen unless a dependency is missing from the plan
            states[run_id] = SKIPPED
            skipped_because[run_id] = "a run it needs was not run"
    return LocalResult(states, outcomes, skipped_because)
