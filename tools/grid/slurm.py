"""The SLURM launcher, through submitit: one job array, one array task per chain of runs.

A chain is a training with the evaluations of its model (base-to-novel train + test;
an ImageNet training + its 14 evaluations), or one independent run (few-shot). An
array task runs its chain's scripts in order, skipping what is finished, exactly as
the local launcher does.

Preemption and time limits: the job function is a ``submitit.helpers.Checkpointable``;
on SLURM's warning signal submitit calls :meth:`ChainJob.checkpoint` and requeues the
task. The requeued task runs the same chain again and ``train.py`` resumes each run
from the last epoch checkpoint in its folder (the engine saves the RNG states with
it), so resubmitting the same calls *is* the exact resume.

Idempotence: every submission is recorded in the event log with its job id; before
submitting, ``squeue`` says which recorded jobs are still pending or running, and a
chain that is finished, queued or running (or whose run folder another process holds)
is not submitted again.
"""
from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from typing import Dict, List, Mapping, Optional, Sequence

import submitit
from submitit.helpers import Checkpointable, DelayedSubmission

from dassl.cpu_allocation import decide_threads, thread_environ
from dassl.run_lock import lock_holder

from .events import EventLog
from .execute import DONE, ELSEWHERE, FAILED, INTERRUPTED, execute_run, record_skip
from .methods import REPO
from .plan import Run, benchmark_dir
from .progress import Progress
from .squeue import queue_states
from .state import QUEUED, RUNNING, RunStatus, is_finished, statuses, totals

SKIPPED = "skipped"


@dataclass
class SlurmOptions:
    """Resources of one array task (one chain) and how the array is submitted."""

    partition: Optional[str] = None  # None: the cluster's default partition
    gpus_per_run: int = 0
    cpus_per_run: Optional[int] = None
    mem_gb: Optional[float] = None
    time_min: int = 24 * 60
    array_parallelism: int = 256
    sbatch: Dict[str, object] = field(default_factory=dict)  # extra #SBATCH options
    setup: List[str] = field(default_factory=list)  # shell lines before the job (module load ...)
    job_name: str = "sempt-benchmark"

    def executor_parameters(self) -> Dict[str, object]:
        """The submitit ``AutoExecutor`` parameters (unset ones are left to the cluster's defaults)."""
        params: Dict[str, object] = {
            "timeout_min": self.time_min,
            "nodes": 1,
            "tasks_per_node": 1,
            "name": self.job_name,
            "slurm_array_parallelism": self.array_parallelism,
            # The job imports tools.grid and the scripts cd themselves: run from the repository.
            "slurm_additional_parameters": {"chdir": str(REPO), **self.sbatch},
        }
        if self.partition:
            params["slurm_partition"] = self.partition
        if self.gpus_per_run:
            params["gpus_per_node"] = self.gpus_per_run
        if self.cpus_per_run:
            params["cpus_per_task"] = self.cpus_per_run
        if self.mem_gb:
            params["mem_gb"] = self.mem_gb
        if self.setup:
            params["slurm_setup"] = list(self.setup)
        return params


def parse_sbatch_options(items: Sequence[str]) -> Dict[str, object]:
    """``--sbatch KEY=VALUE`` (or a bare ``KEY`` for a flag) into submitit's additional parameters."""
    options: Dict[str, object] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip().lstrip("-")
        if not key:
            raise ValueError(f"--sbatch {item!r}: expected KEY=VALUE (e.g. account=abc) or a flag name")
        options[key.replace("-", "_")] = value if sep else True
    return options


def _job_id() -> str:
    try:
        return submitit.JobEnvironment().job_id
    except RuntimeError:  # not inside a submitit job (the function called directly)
        return os.environ.get("SLURM_JOB_ID", "")


class ChainJob(Checkpointable):
    """One array task: the scripts of a chain of runs, in order, each skipped once finished."""

    def __init__(self, runs: Sequence[Run], plan_env: Mapping[str, str], lock_poll_s: float = 10.0) -> None:
        self.runs = [asdict(r) for r in runs]  # plain data: the pickle does not depend on class layout
        self.plan_env = dict(plan_env)
        self.lock_poll_s = lock_poll_s

    def _events(self) -> EventLog:
        return EventLog(benchmark_dir(self.plan_env["OUTPUT"]))

    def __call__(self) -> Dict[str, str]:
        events = self._events()
        job_id = _job_id()
        runs = [Run(**r) for r in self.runs]
        # The task's allocation, not the node's cores (dassl.cpu_allocation).
        threads = decide_threads()
        extra = thread_environ(threads.count)
        states: Dict[str, str] = {}
        for run in runs:
            bad = [d for d in run.deps if states.get(d) in (FAILED, SKIPPED, INTERRUPTED)]
            if bad:
                states[run.run_id] = SKIPPED
                record_skip(run, bad[0], events, launcher="slurm", job_id=job_id)
                continue
            while True:
                if is_finished(run.outdir):
                    states[run.run_id] = DONE
                    break
                if lock_holder(run.outdir) is not None:
                    # Another process (e.g. this task's previous attempt, still exiting) runs it.
                    time.sleep(self.lock_poll_s)
                    continue
                outcome = execute_run(run, self.plan_env, events, extra, launcher="slurm", job_id=job_id,
                                      threads=threads.count, threads_source=threads.source)
                if outcome.state == ELSEWHERE:
                    continue
                states[run.run_id] = outcome.state
                break
        if INTERRUPTED in states.values():
            # Killed by a signal: if it is SLURM's preemption warning, submitit's handler
            # requeues this task during this pause; otherwise the task ends as failed.
            time.sleep(30)
        bad = {k: v for k, v in states.items() if v != DONE}
        if bad:
            raise RuntimeError("runs not finished: " + ", ".join(f"{k} ({v})" for k, v in bad.items()))
        return states

    def checkpoint(self, *args, **kwargs) -> DelayedSubmission:
        """Requeue the same chain: finished runs are skipped, the interrupted one resumes."""
        # Called from submitit's signal handler: never wait long for the event log's lock.
        self._events().append("requeue", lock_timeout_s=2.0, runs=[r["run_id"] for r in self.runs], job_id=_job_id(),
                              launcher="slurm")
        return DelayedSubmission(self, *args, **kwargs)


def chains_to_submit(chains: Sequence[Sequence[Run]], by_run: Mapping[str, RunStatus]) -> List[List[Run]]:
    """The chains with work left that no job or process has in hand."""
    todo = []
    for chain in chains:
        states = [by_run[r.run_id].state for r in chain]
        if all(s == DONE for s in states) or any(s in (RUNNING, QUEUED) for s in states):
            continue
        todo.append(list(chain))
    return todo


def submit(chains: Sequence[Sequence[Run]], plan_env: Mapping[str, str], options: SlurmOptions,
           events: EventLog) -> List[str]:
    """Submit ``chains`` as one job array; record and return the job ids."""
    if not chains:
        return []
    folder = benchmark_dir(plan_env["OUTPUT"]) / "slurm" / "%j"
    executor = submitit.AutoExecutor(folder=str(folder), cluster="slurm")
    executor.update_parameters(**options.executor_parameters())
    jobs = []
    with executor.batch():
        for chain in chains:
            jobs.append(executor.submit(ChainJob(chain, plan_env)))
    ids = []
    for job, chain in zip(jobs, chains):
        events.append("submit", runs=[r.run_id for r in chain], job_id=job.job_id, launcher="slurm",
                      stdout=str(job.paths.stdout), stderr=str(job.paths.stderr))
        ids.append(job.job_id)
    return ids


def current_statuses(runs: Sequence[Run], events: EventLog) -> List[RunStatus]:
    """Every run's state, with the SLURM queue when the event log mentions jobs."""
    records = events.read()
    queue = queue_states() if any(e.get("job_id") for e in records) else {}
    return statuses(runs, records, queue)


def wait_for_jobs(runs: Sequence[Run], events: EventLog, progress: Optional[Progress], poll_s: float,
                  job_ids: Sequence[str] = ()) -> List[RunStatus]:
    """Poll until no run is queued or running and ``job_ids`` have left the queue (so their
    events and logs are complete); return the final states."""
    while True:
        items = current_statuses(runs, events)
        counts = totals(items)
        if progress is not None:
            progress.update(done=counts[DONE], failed=counts["failed"], running=counts[RUNNING],
                            queued=counts[QUEUED])
        if counts[RUNNING] == 0 and counts[QUEUED] == 0:
            if not job_ids or not set(job_ids) & set(queue_states()):
                return current_statuses(runs, events)
        time.sleep(poll_s)

