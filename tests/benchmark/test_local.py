"""The local launcher on the synthetic world: same numbers as the scripts, resume after SIGKILL,
a failing run fails alone, two runners never run one job twice, one GPU per slot."""
from __future__ import annotations

import ast
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from dassl.run_lock import lock_holder
from tools.grid.collect import read_accuracy
from tools.grid.local import LocalOptions, detect_gpus, parse_gpus
from tools.grid.state import is_finished

from .conftest import REPO, benchmark, events, script

SMALL = ["--protocol", "base2new", "--datasets", "synthetic", "--opts", "OPTIM.MAX_EPOCH", "2"]


def accuracies(output: Path) -> dict:
    found = {}
    for log in sorted(output.glob("base2new/*/synthetic/*/*/*/seed*/log.txt")):
        found[str(log.parent.relative_to(output))] = read_accuracy(str(log))
    return found


def run_scripts(output: Path, env: dict, methods, seeds, *opts: str) -> None:
    env = dict(env, OUTPUT=str(output))
    for method in methods:
        for seed in seeds:
            for part in ("train", "test"):
                result = script(f"{method}/base2new_{part}.sh", "synthetic", str(seed), *opts, env=env)
                assert result.returncode == 0, result.stdout[-1500:] + result.stderr[-1500:]


def test_two_slots_give_the_scripts_numbers_and_each_skips_the_others_runs(tmp_path, bench_env):
    by_runner, by_scripts = tmp_path / "runner", tmp_path / "scripts"
    result = benchmark("run", *SMALL, "--methods", "CoOp", "SemPT", "--seeds", "1", "2", "--slots", "2",
                       "--gpus", "none", "--output", str(by_runner), env=bench_env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Finished: 8 done, 0 running, 0 queued, 0 failed, 0 pending (of 8)" in result.stdout
    run_scripts(by_scripts, bench_env, ["coop", "sempt"], [1, 2], "OPTIM.MAX_EPOCH", "2")
    ours, theirs = accuracies(by_runner), accuracies(by_scripts)
    assert len(ours) == 8 and all(v is not None for v in ours.values())
    assert ours == theirs

    log = events(by_runner)
    starts = [e for e in log if e["event"] == "start"]
    assert sorted(e["run"] for e in starts) == sorted(ours)  # each run started once
    assert {e["threads"] for e in starts} == {max(1, (os.cpu_count() or 1) // 2)}
    # Two at once, never three: the run intervals of the event log overlap by at most 2.
    edges = sorted([(e["unix"], 1) for e in starts] + [(e["unix"], -1) for e in log if e["event"] == "done"])
    level, peak = 0, 0
    for _, step in edges:
        level += step
        peak = max(peak, level)
    assert peak == 2

    # Runs finished by the scripts are done for the runner, and the other way round.
    again = benchmark("run", *SMALL, "--methods", "CoOp", "SemPT", "--seeds", "1", "2", "--output", str(by_scripts),
                      env=bench_env)
    assert again.returncode == 0 and "Running 8 runs (8 already done)" in again.stdout
    assert not [e for e in events(by_scripts) if e["event"] == "start"]
    # The same run, so the same overrides as the runner's --opts (without them it is a run of
    # another config, which train.py refuses: tests/benchmark/test_finished.py).
    skip = script("sempt/base2new_test.sh", "synthetic", "2", *SMALL[-2:], env=dict(bench_env, OUTPUT=str(by_runner)))
    assert skip.returncode == 0 and "finished; skip this job" in skip.stdout

    status = benchmark("status", "--output", str(by_runner), env=bench_env)
    assert status.returncode == 0 and "Totals: 8 done, 0 running, 0 queued, 0 failed, 0 pending (of 8)" in status.stdout
    report = benchmark("report", "--output", str(by_runner), "--format", "csv", env=bench_env)
    assert report.returncode == 0
    prefix = "base2new,SemPT,synthetic_maple,4,synthetic,base,"
    base = [line for line in report.stdout.splitlines() if line.startswith(prefix)]
    expected = sum(ours[f"base2new/train_base/synthetic/shots_4/SemPT/synthetic_maple/seed{s}"] for s in (1, 2)) / 2
    assert len(base) == 1 and float(base[0].split(",")[6]) == pytest.approx(expected, abs=1e-4)
    # Every run wrote its cost.json, which the cost rows average (2 trainings + 2 evaluations).
    cost = [line.split(",") for line in report.stdout.splitlines()
            if line.startswith("base2new,SemPT,synthetic_maple,4,runs,training_seconds,")]
    assert len(cost) == 1 and float(cost[0][6]) > 0 and cost[0][8] == "4"


def _wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_a_run_killed_mid_training_resumes_bit_identical(tmp_path, bench_env):
    env = dict(bench_env, SHOTS="16")
    grid = ["--protocol", "base2new", "--datasets", "synthetic", "--methods", "CoOp", "--seeds", "1",
            "--opts", "OPTIM.MAX_EPOCH", "8"]
    out = tmp_path / "out"
    train = out / "base2new/train_base/synthetic/shots_16/CoOp/synthetic/seed1"
    runner = subprocess.Popen([sys.executable, "-m", "tools.benchmark", "run", *grid, "--output", str(out),
                               "--no-progress"], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True)
    try:
        _wait_for(lambda: any((train / "prompt_learner").glob("model.pth.tar-[2-7]")), 300, "epoch 2 of training")
        holder = lock_holder(str(train))
        assert holder is not None, "the run holds its folder's lock while it trains"
        os.kill(int(re.search(r"pid (\d+)", holder).group(1)), signal.SIGKILL)  # train.py itself, mid-training
        output, _ = runner.communicate(timeout=300)
    finally:
        if runner.poll() is None:
            runner.kill()
    assert not is_finished(str(train)), "training ended before the kill; raise OPTIM.MAX_EPOCH"
    assert runner.returncode == 1, output
    assert "interrupted" in output
    status = benchmark("status", "--output", str(out), env=env).stdout
    assert re.search(r"pending\s+base2new/train_base/\S+seed1\s+\[interrupted: stopped by SIGKILL", status), status
    assert re.search(r"pending\s+base2new/test_new/\S+seed1\s+\[skipped: needs base2new/train_base", status), status

    resumed = benchmark("run", *grid, "--output", str(out), env=env)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    log = (train / "log.txt").read_text()
    assert "will resume training" in log and "Previous epoch: " in log

    reference = tmp_path / "reference"
    run_scripts(reference, env, ["coop"], [1], "OPTIM.MAX_EPOCH", "8")
    assert accuracies(out) == accuracies(reference) and len(accuracies(out)) == 2
    ours = torch.load(train / "prompt_learner/model.pth.tar-8", map_location="cpu", weights_only=False)
    theirs = torch.load(str(train).replace(str(out), str(reference)) + "/prompt_learner/model.pth.tar-8",
                        map_location="cpu", weights_only=False)
    assert ours["state_dict"].keys() == theirs["state_dict"].keys()
    for key in ours["state_dict"]:
        assert torch.equal(ours["state_dict"][key], theirs["state_dict"][key]), key


def test_a_bad_config_fails_alone_and_is_reported(tmp_path, bench_env):
    grid = tmp_path / "grid.yaml"
    grid.write_text("protocols: [base2new]\nmethods: [CoOp, SemPT]\ndatasets: [synthetic]\nseeds: [1]\n"
                    "opts: [OPTIM.MAX_EPOCH, 1]\nmethod_opts: {SemPT: [TRAINER.SEMPT.NO_SUCH_KEY, 1]}\n")
    out = tmp_path / "out"
    result = benchmark("run", "--grid", str(grid), "--output", str(out), "--slots", "2", env=bench_env)
    assert result.returncode == 1
    assert "Finished: 2 done, 0 running, 0 queued, 1 failed, 1 pending (of 4)" in result.stdout
    failed = "base2new/train_base/synthetic/shots_4/SemPT/synthetic_maple/seed1"
    console = out / "benchmark" / "console" / f"{failed}.log"
    assert f"failed: {failed} exit code 1; see {console}" in result.stdout
    assert "NO_SUCH_KEY" in console.read_text()  # the error itself is in the log we point to
    skipped = "base2new/test_new/synthetic/shots_4/SemPT/synthetic_maple/seed1"
    assert f"pending: {skipped} skipped: needs {failed}" in result.stdout
    assert all(is_finished(str(out / f"base2new/{p}/synthetic/shots_4/CoOp/synthetic/seed1"))
               for p in ("train_base", "test_new"))
    status = benchmark("status", "--output", str(out), "--state", "failed", env=bench_env)
    assert f"failed   {failed}" in status.stdout and f"log: {console}" in status.stdout


def test_two_runners_at_once_never_run_a_job_twice(tmp_path, bench_env):
    out = tmp_path / "out"
    command = [sys.executable, "-m", "tools.benchmark", "run", *SMALL, "--methods", "CoOp", "--seeds", "1",
               "--output", str(out), "--no-progress"]
    runners = [subprocess.Popen(command, cwd=REPO, env=bench_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True) for _ in range(2)]
    outputs = [r.communicate(timeout=600)[0] for r in runners]
    assert [r.returncode for r in runners] == [0, 0], outputs
    for part in ("train_base", "test_new"):
        folder = out / f"base2new/{part}/synthetic/shots_4/CoOp/synthetic/seed1"
        assert sorted(p.name for p in folder.glob("log.txt*")) == ["log.txt"]  # one run, never restarted
        assert (folder / "log.txt").read_text().count("Loading trainer: CoOp") == 1
        ran = [e for e in events(out) if e["event"] == "done" and e["run"].startswith(f"base2new/{part}/")
               and not e.get("detail")]
        assert len(ran) == 1


def test_each_slot_sees_one_gpu_and_cpu_threads_are_shared():
    options = LocalOptions.resolve(None, ["0", "1", "3"], None, cpus=12)
    assert (options.slots, options.threads) == (3, 4)
    assert [options.slot_env(i, cpu_only=False)["CUDA_VISIBLE_DEVICES"] for i in range(3)] == ["0", "1", "3"]
    shared = LocalOptions.resolve(4, ["0", "1"], None, cpus=8)
    assert [shared.slot_env(i, cpu_only=False)["CUDA_VISIBLE_DEVICES"] for i in range(4)] == ["0", "1", "0", "1"]
    cpu = LocalOptions.resolve(2, [], None, cpus=2)
    assert cpu.slot_env(1, cpu_only=False) == {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    assert cpu.slot_env(1, cpu_only=True)["CUDA_VISIBLE_DEVICES"] == ""  # --gpus none hides the GPUs
    assert detect_gpus({"CUDA_VISIBLE_DEVICES": "2,5"}) == ["2", "5"]
    assert detect_gpus({"CUDA_VISIBLE_DEVICES": "-1"}) == [] and detect_gpus({"CUDA_VISIBLE_DEVICES": ""}) == []
    assert parse_gpus("auto") is None and parse_gpus("none") == [] and parse_gpus("0, 2") == ["0", "2"]


def test_the_engine_never_spreads_a_model_over_gpus():
    """A run sees one GPU (its slot's): nothing may wrap a model in (Distributed)DataParallel."""
    offenders = []
    sources = [REPO / "train.py", *sorted((REPO / "dassl").rglob("*.py")), *sorted((REPO / "trainers").rglob("*.py"))]
    for path in sources:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                name = getattr(node.func, "attr", getattr(node.func, "id", ""))
                if name in ("DataParallel", "DistributedDataParallel"):
                    offenders.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert not offenders, offenders
