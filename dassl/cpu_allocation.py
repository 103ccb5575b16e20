"""How many CPU threads a run uses, decided in one place for local runs and SLURM tasks.

The CPUs a process may use are its *allocation*: under SLURM the task's
``SLURM_CPUS_PER_TASK``, else the job's CPUs on this node (``SLURM_CPUS_ON_NODE``, else
this node's entry of ``SLURM_JOB_CPUS_PER_NODE``); outside SLURM (or if SLURM says
more) the affinity mask (``os.sched_getaffinity``, which ``taskset`` and cgroups narrow).
Without this, a SLURM task on a cluster that does not bind tasks to cores runs one
thread per core of the whole node, and two such tasks on a node slow each other down
several times over.

The thread count of a run is, in this order: an explicit request (``--threads``), an
exported ``OMP_NUM_THREADS``, else the allocation divided between the runs that share
it. Data-loader workers are capped by the allocation too
(:func:`capped_workers`).

No torch import here: the benchmark runner decides threads without loading the engine.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Mapping, Optional

__all__ = ["CpuAllocation", "allocated_cpus", "decide_threads", "capped_workers", "thread_environ"]

THREAD_ENV_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


@dataclass(frozen=True)
class CpuAllocation:
    """A CPU count and where it came from (said in the run's log)."""

    count: int
    source: str

    def describe(self) -> str:
        return f"{self.count} ({self.source})"


def _positive_int(value: Optional[str]) -> Optional[int]:
    try:
        number = int(str(value).strip())
    except (TypeError, ValueError):
        return None
    return number if number > 0 else None


def _first_node_cpus(value: Optional[str]) -> Optional[int]:
    """``SLURM_JOB_CPUS_PER_NODE`` (e.g. ``"4(x2),2"``): the count of the first node group.

    A batch script and its steps run on the job's first node, so its entry is this node's.
    """
    if not value:
        return None
    match = re.match(r"\s*(\d+)", value)
    return _positive_int(match.group(1)) if match else None


def _affinity_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def allocated_cpus(environ: Optional[Mapping[str, str]] = None, affinity: Optional[int] = None) -> CpuAllocation:
    """The CPUs this process may use (see the module docstring); ``affinity`` overrides the
    mask's size (for callers that know it, and for tests)."""
    environ = os.environ if environ is None else environ
    mask = affinity if affinity is not None else _affinity_cpus()
    slurm = None
    for name, value in (("SLURM_CPUS_PER_TASK", _positive_int(environ.get("SLURM_CPUS_PER_TASK"))),
                        ("SLURM_CPUS_ON_NODE", _positive_int(environ.get("SLURM_CPUS_ON_NODE"))),
                        ("SLURM_JOB_CPUS_PER_NODE", _first_node_cpus(environ.get("SLURM_JOB_CPUS_PER_NODE")))):
        if value is not None:
            slurm = CpuAllocation(value, f"{name}={environ.get(name)}")
            break
    if slurm is not None and slurm.count <= mask:
        return slurm
    if slurm is not None:
        return CpuAllocation(mask, f"the affinity mask, narrower than {slurm.source}")
    return CpuAllocation(mask, "the affinity mask")


def decide_threads(
    requested: Optional[int] = None,
    slots: int = 1,
    environ: Optional[Mapping[str, str]] = None,
    affinity: Optional[int] = None,
) -> CpuAllocation:
    """The CPU threads of one run: ``requested``, else an exported ``OMP_NUM_THREADS``, else
    the allocation divided between ``slots`` runs at once (at least 1)."""
    environ = os.environ if environ is None else environ
    if requested is not None:
        if requested < 1:
            raise ValueError(f"--threads {requested}: need at least 1")
        return CpuAllocation(requested, "--threads")
    exported = _positive_int(environ.get("OMP_NUM_THREADS"))
    if exported is not None:
        return CpuAllocation(exported, "OMP_NUM_THREADS")
    allocation = allocated_cpus(environ, affinity)
    if slots <= 1:
        return allocation
    return CpuAllocation(max(1, allocation.count // slots), f"{allocation.source}, shared by {slots} runs")


def thread_environ(threads: int) -> dict:
    """The environment variables that pin a child process to ``threads`` threads."""
    return {name: str(threads) for name in THREAD_ENV_VARS}


def capped_workers(requested: int, environ: Optional[Mapping[str, str]] = None,
                   affinity: Optional[int] = None) -> int:
    """``DATALOADER.NUM_WORKERS`` capped by the allocation (0, no worker processes, stays 0)."""
    if requested <= 0:
        return 0
    return min(requested, allocated_cpus(environ, affinity).count)
