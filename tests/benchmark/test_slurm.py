"""The SLURM launcher on a real (single-node) cluster: `bash tools/slurm/local_cluster.sh start`.

`.ci/run` starts that cluster and exports SLURM_CONF; elsewhere these tests are skipped
with the reason. They submit through submitit job arrays, check that a second `run`
submits nothing, and that a preempted (SIGUSR2, requeued by submitit) and then cancelled
(scancel) job resumes to the very same result as an uninterrupted run.
"""
from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest
import torch

from tools.grid.squeue import queue_states

from .conftest import benchmark, events
from .test_local import accuracies

pytestmark = pytest.mark.slurm
START = "bash tools/slurm/local_cluster.sh start, then export the SLURM_CONF it prints"


@pytest.fixture(scope="module", autouse=True)
def cluster():
    if shutil.which("sinfo") is None or shutil.which("sbatch") is None:
        pytest.skip(f"SLURM is not installed (no sinfo/sbatch on PATH); apt-get install slurm-wlm munge and {START}")
    try:
        answer = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=20)
    except subprocess.TimeoutExpired:
        pytest.skip(f"the SLURM controller does not answer (sinfo timed out); {START}")
    states = answer.stdout.split()
    if answer.returncode != 0 or not any(s.rstrip("*~#") in ("idle", "mixed", "allocated") for s in states):
        pytest.skip(f"no usable SLURM node (sinfo: {answer.stderr.strip() or states}); {START}")


def _wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def _job_of(output: Path) -> str:
    return [e for e in events(output) if e["event"] == "submit"][-1]["job_id"]


def test_a_grid_runs_on_slurm_and_a_second_run_submits_nothing(tmp_path, bench_env):
    grid = ["--protocol", "base2new", "--datasets", "synthetic", "--methods", "CoOp", "--seeds", "1", "2",
            "--opts", "OPTIM.MAX_EPOCH", "2"]
    out = tmp_path / "slurm"
    result = benchmark("run", *grid, "--launcher", "slurm", "--cpus-per-run", "1", "--poll", "1",
                       "--output", str(out), env=bench_env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Submitted 2 array task(s) (4 runs)" in result.stdout
    assert "Finished: 4 done, 0 running, 0 queued, 0 failed, 0 pending (of 4)" in result.stdout
    submits = [e for e in events(out) if e["event"] == "submit"]
    assert len(submits) == 2 and all(len(e["runs"]) == 2 for e in submits)  # one task per train+test chain
    ran = [e for e in events(out) if e["event"] == "done"]
    assert len(ran) == 4 and {e["job_id"] for e in ran} == {e["job_id"] for e in submits}

    again = benchmark("run", *grid, "--launcher", "slurm", "--poll", "1", "--output", str(out), env=bench_env)
    assert again.returncode == 0 and "Nothing to submit" in again.stdout
    assert len([e for e in events(out) if e["event"] == "submit"]) == 2

    local = tmp_path / "local"
    assert benchmark("run", *grid, "--output", str(local), env=bench_env).returncode == 0
    assert accuracies(out) == accuracies(local) and len(accuracies(out)) == 4


def test_preempted_then_cancelled_jobs_resume_to_the_uninterrupted_result(tmp_path, bench_env):
    env = dict(bench_env, SHOTS="16")
    grid = ["--protocol", "base2new", "--datasets", "synthetic", "--methods", "CoOp", "--seeds", "3",
            "--opts", "OPTIM.MAX_EPOCH", "8"]
    out = tmp_path / "slurm"
    train = out / "base2new/train_base/synthetic/shots_16/CoOp/synthetic/seed3"

    def epoch_at_least(n):
        def reached():
            saved = (train / "prompt_learner").glob("model.pth.tar-*")
            return any(int(p.name.rsplit("-", 1)[1]) >= n for p in saved)
        return reached

    submitted = benchmark("run", *grid, "--launcher", "slurm", "--detach", "--output", str(out), env=env)
    assert submitted.returncode == 0 and "Submitted 1 array task(s)" in submitted.stdout
    duplicate = benchmark("run", *grid, "--launcher", "slurm", "--detach", "--output", str(out), env=env)
    assert "Nothing to submit" in duplicate.stdout  # queued or running: not submitted twice
    job = _job_of(out)

    # 1. Preemption: SLURM's warning signal; submitit checkpoints the chain and requeues the job.
    _wait_for(epoch_at_least(2), 300, "epoch 2")
    subprocess.run(["scancel", "--signal=USR2", job], check=True)
    _wait_for(lambda: any(e["event"] == "requeue" for e in events(out)), 60, "the requeue event")
    _wait_for(lambda: queue_states().get(job) == "PENDING", 60, "the requeued job to wait in the queue")
    # A requeued job waits ~2 minutes before it is eligible again; let it go now.
    subprocess.run(["scontrol", "update", f"jobid={job}", "StartTime=now"], check=True)
    status = benchmark("status", "--output", str(out), env=env).stdout
    assert "queued" in status and f"SLURM job {job}" in status

    # 2. Cancellation mid-run: the job leaves the queue; the next `run` resubmits and resumes.
    _wait_for(lambda: len(list(train.glob("log.txt-*"))) >= 1 and epoch_at_least(5)(), 300, "the resumed run")
    subprocess.run(["scancel", job], check=True)
    _wait_for(lambda: job not in queue_states(), 120, "the cancelled job to leave the queue")
    status = benchmark("status", "--output", str(out), env=env).stdout
    train_line = next(line for line in status.splitlines() if "train_base" in line)
    # SIGTERM reached the run (its interrupt is logged), or the job died before it could log anything.
    assert (train_line.startswith("pending") and "interrupted: stopped by SIGTERM" in train_line) or \
        (train_line.startswith("failed") and f"SLURM job {job} left the queue" in train_line), status

    resumed = benchmark("run", *grid, "--launcher", "slurm", "--poll", "1", "--output", str(out), env=env)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "Finished: 2 done" in resumed.stdout and _job_of(out) != job
    log = (train / "log.txt").read_text()
    assert "will resume training" in log and len(list(train.glob("log.txt-*"))) >= 2

    reference = tmp_path / "reference"
    assert benchmark("run", *grid, "--output", str(reference), env=env).returncode == 0
    assert accuracies(out) == accuracies(reference) and len(accuracies(out)) == 2
    ours = torch.load(train / "prompt_learner/model.pth.tar-8", map_location="cpu", weights_only=False)
    ref_train = reference / train.relative_to(out)
    theirs = torch.load(ref_train / "prompt_learner/model.pth.tar-8", map_location="cpu", weights_only=False)
    for key in theirs["state_dict"]:
        assert torch.equal(ours["state_dict"][key], theirs["state_dict"][key]), key


def test_a_refused_submission_is_a_clear_error_and_records_nothing(tmp_path, bench_env):
    out = tmp_path / "out"
    result = benchmark("run", "--protocol", "base2new", "--datasets", "synthetic", "--methods", "CoOp", "--seeds", "1",
                       "--launcher", "slurm", "--partition", "no_such_partition", "--detach", "--output", str(out),
                       env=bench_env)
    assert result.returncode == 2 and "SLURM refused the submission" in result.stderr
    assert "Check --partition" in result.stderr and "Traceback" not in result.stderr
    assert not [e for e in events(out) if e["event"] == "submit"]
