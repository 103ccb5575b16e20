"""The runner under faults found by trying (issue 22): killed with -9, its runs end with it;
an exported OMP_NUM_THREADS and a SLURM allocation set the threads of each run."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import pytest

from dassl.run_lock import lock_holder
from tests.benchmark.conftest import REPO, benchmark


def _wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (dead, not yet reaped) counts as gone
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_a_runner_killed_with_9_takes_its_runs_with_it(tmp_path, bench_env):
    grid = ["--protocol", "base2new", "--datasets", "synthetic", "--methods", "CoOp", "--seeds", "1",
            "--opts", "OPTIM.MAX_EPOCH", "500"]
    out = tmp_path / "out"
    train = out / "base2new/train_base/synthetic/shots_4/CoOp/synthetic/seed1"
    runner = subprocess.Popen([sys.executable, "-m", "tools.benchmark", "run", *grid, "--output", str(out),
                               "--no-progress"], cwd=REPO, env=bench_env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    train_pid = None
    try:
        _wait_for(lambda: lock_holder(str(train)) is not None, 300, "train.py to take its run folder")
        train_pid = int(re.search(r"pid (\d+)", lock_holder(str(train))).group(1))
        runner.send_signal(signal.SIGKILL)
        runner.wait(timeout=30)
        _wait_for(lambda: not _alive(train_pid), 30, "train.py to end with its runner")
    finally:
        if runner.poll() is None:
            runner.kill()
        if train_pid is not None and _alive(train_pid):
            os.kill(train_pid, signal.SIGKILL)
    _wait_for(lambda: lock_holder(str(train)) is None, 10, "the run folder's lock to be released")
    status = benchmark("status", "--output", str(out), env=bench_env).stdout
    assert re.search(r"pending\s+base2new/train_base/\S+seed1", status), status  # not "running" forever


def test_the_runner_honours_an_exported_omp_num_threads_and_says_where_its_threads_come_from():
    from tools.grid.local import LocalOptions

    assert LocalOptions.resolve(2, [], None, cpus=8, environ={"OMP_NUM_THREADS": "3"}).threads == 3
    options = LocalOptions.resolve(2, [], None, cpus=8, environ={})
    assert (options.threads, options.threads_source) == (4, "the affinity mask, shared by 2 runs")
    assert LocalOptions.resolve(2, [], 1, cpus=8, environ={"OMP_NUM_THREADS": "3"}).threads == 1  # --threads wins


def test_the_command_line_runner_takes_omp_num_threads_from_the_environment(tmp_path, monkeypatch):
    from tools.grid import cli

    seen = {}

    def fake_run_local(runs, plan_env, events_log, options, progress=None, cpu_only=False):
        seen["threads"] = options.threads
        raise KeyboardInterrupt  # stop before anything runs

    monkeypatch.setattr("tools.grid.local.run_local", fake_run_local)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    monkeypatch.setattr(cli, "build_plan", lambda grid, output: cli.Plan(output=output, env={}, grid={}, runs=[]))
    monkeypatch.setattr(cli, "save_plan", lambda plan: tmp_path / "plan.json")
    code = cli.main(["run", "--protocol", "base2new", "--datasets", "synthetic", "--methods", "CoOp", "--seeds", "1",
                     "--output", str(tmp_path / "out"), "--gpus", "none", "--no-progress"])
    assert code == 130 and seen["threads"] == 3


def test_a_slurm_task_pins_its_runs_to_its_allocation(tmp_path, monkeypatch):
    from tools.grid import slurm
    from tools.grid.execute import DONE, Outcome
    from tools.grid.plan import Run

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("SLURM_CPUS_PER_TASK", raising=False)  # no --cpus-per-run: left to the cluster
    monkeypatch.setenv("SLURM_CPUS_ON_NODE", "1")
    calls = []

    def fake_execute(run, plan_env, events_log, extra_env=None, groups=None, **fields):
        calls.append((dict(extra_env or {}), fields))
        return Outcome(DONE, 0, 0.0)

    monkeypatch.setattr(slurm, "execute_run", fake_execute)
    monkeypatch.setattr(slurm, "is_finished", lambda outdir: bool(calls))
    run = Run(run_id="r", outdir=str(tmp_path / "r"), trainer="CoOp", folder="coop", script="base2new_train.sh",
              args=["synthetic", "1"], argv=[], protocols=["base2new"])
    assert slurm.ChainJob([run], {"OUTPUT": str(tmp_path / "out")})() == {"r": DONE}
    extra, fields = calls[0]
    assert extra == {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    assert fields["threads"] == 1 and fields["threads_source"] == "SLURM_CPUS_ON_NODE=1"


def test_the_main_job_passes_threads_on(tmp_path, monkeypatch):
    from tools import run_synthetic

    commands = []
    monkeypatch.setattr(run_synthetic.synthetic_world, "ensure_world", lambda root: root)
    # The main job calls the runner in-process (and then the table).
    monkeypatch.setattr(run_synthetic.benchmark_cli, "main", lambda argv: commands.append(list(argv)) or 0)
    monkeypatch.setattr(run_synthetic, "report_base2new", lambda *args, **kwargs: None)
    assert run_synthetic.main(["--threads", "3", "--data", str(tmp_path / "data"), "--methods", "coop",
                               "--seeds", "1"]) == 0
    runner = commands[0]
    assert runner[runner.index("--threads") + 1] == "3"
