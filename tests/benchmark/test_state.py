"""Run states from the run folder, its lock, the last event and the SLURM queue."""
from __future__ import annotations

import os
import socket

import pytest

from dassl.run_lock import RunLock
from tools.grid.plan import Run
from tools.grid.state import DONE, FAILED, PENDING, QUEUED, RUNNING, run_status


@pytest.fixture()
def run(tmp_path):
    return Run(run_id="base2new/train_base/x/seed1", outdir=str(tmp_path / "run"), trainer="CoOp", folder="coop",
               script="base2new_train.sh", args=["x", "1"], argv=[], protocols=["base2new"])


def event(kind, **fields):
    return {"event": kind, "host": socket.gethostname(), "pid": os.getpid(), **fields}


def test_the_folder_and_the_lock_come_first(run):
    assert run_status(run, None, {}).state == PENDING
    with RunLock(run.outdir):
        status = run_status(run, event("fail", console="c.log"), {})
        assert status.state == RUNNING and f"pid {os.getpid()}" in status.detail
    with open(os.path.join(run.outdir, "log.txt"), "w") as f:
        f.write("=> result\n* accuracy: 1.0%\n")
    assert run_status(run, event("fail"), {"7": "RUNNING"}).state == DONE


@pytest.mark.parametrize("last,queue,state,detail", [
    (event("submit", job_id="7_1", stdout="o.out"), {"7_1": "PENDING"}, QUEUED, "SLURM job 7_1 (pending)"),
    (event("start", job_id="7_1", console="c.log"), {"7_1": "RUNNING"}, RUNNING, "SLURM job 7_1"),
    (event("submit", job_id="7_1"), {"7_1": "RUNNING"}, QUEUED, "running"),  # an earlier run of its chain
    (event("interrupt", job_id="7_1", reason="x"), {"7_1": "PENDING"}, QUEUED, "pending"),  # requeued
    (event("start", job_id="7_1", console="c.log"), {}, FAILED, "left the queue before this run finished"),
    (event("submit", job_id="7_1"), None, PENDING, "state unknown (squeue could not be asked)"),
    (event("fail", job_id="7_1", console="c.log", detail="exit code 1"), {"7_1": "RUNNING"}, FAILED, "exit code 1"),
    (event("skip", reason="needs y, which did not finish"), {}, PENDING, "skipped: needs y"),
    (event("interrupt", reason="stopped by SIGKILL"), {}, PENDING, "interrupted: stopped by SIGKILL"),
    (event("start", console="c.log"), {}, RUNNING, f"local runner pid {os.getpid()}"),  # this process is alive
    (dict(event("start"), pid=2 ** 22 + 7), {}, PENDING, "its launcher stopped"),  # no such process
    (dict(event("queue"), host="another-host"), {}, PENDING, "its launcher stopped"),
])
def test_states_from_the_last_event(run, last, queue, state, detail):
    status = run_status(run, last, queue)
    assert status.state == state and detail in status.detail, status
