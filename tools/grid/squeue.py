"""The state of SLURM jobs from ``squeue`` (no accounting database needed).

``sacct`` needs slurmdbd, which many small clusters (and the test cluster of
``tools/slurm/local_cluster.sh``) lack; ``squeue`` always answers for the jobs still in
the queue. A job that is not listed has left it: finished, failed or cancelled; whether
its runs finished is read from their folders, never from SLURM.
"""
from __future__ import annotations

import getpass
import shutil
import subprocess
from typing import Dict


class QueueUnavailable(RuntimeError):
    """``squeue`` is missing or the controller does not answer."""


def slurm_available() -> bool:
    return shutil.which("squeue") is not None and shutil.which("sbatch") is not None


def queue_states() -> Dict[str, str]:
    """``{job id: state}`` of this user's jobs in the queue; array tasks as ``<array>_<task>``."""
    if shutil.which("squeue") is None:
        raise QueueUnavailable("squeue not found: SLURM's client commands are not installed on this machine")
    # -r lists each array task on its own line, even the pending ones.
    command = ["squeue", "-h", "-r", "-u", getpass.getuser(), "-o", "%i|%T"]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        raise QueueUnavailable(f"`{' '.join(command)}` did not answer within 60 s") from None
    if result.returncode != 0:
        raise QueueUnavailable(f"`{' '.join(command)}` failed: {result.stderr.strip()}")
    states: Dict[str, str] = {}
    for line in result.stdout.splitlines():
        if "|" in line:
            job, state = line.strip().split("|", 1)
            states[job] = state.strip()
    return states
