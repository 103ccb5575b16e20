""""Finished" is defined once (dassl/run_record.py): every reader agrees on it, the
fingerprint check included, and the runner shows a run of another config as stale
(issue 18 part 5, issue 22 part 2)."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

import train
from dassl import run_record
from tools.grid.plan import Plan, Run, save_plan
from tools.grid.report import planned_judge
from tools.grid.state import DONE, PENDING, STALE, run_status
from tools.results import collect_base2new
from tools import sempt_sweep

from .conftest import REPO, benchmark, events

RUN_ID = "base2new/train_base/synthetic/shots_4/CoOp/synthetic/seed1"


def command(outdir: Path, *opts: str):
    """A planned train.py command line, as the scripts write it (PYTHON train.py ARGS)."""
    return [sys.executable, "train.py", "--root", "/data", "--output-dir", str(outdir), "--seed", "1",
            "--trainer", "CoOp", "--dataset-config-file", "configs/datasets/synthetic.yaml",
            "--config-file", "configs/trainers/CoOp/synthetic.yaml", "DATASET.NUM_SHOTS", "4",
            "DATASET.SUBSAMPLE_CLASSES", "base", *opts]


def args_of(argv):
    args = train.build_parser().parse_args(argv[2:])
    args.config_file, args.dataset_config_file = str(REPO / args.config_file), str(REPO / args.dataset_config_file)
    return args


def config_of(argv):
    return train.setup_cfg(args_of(argv))


def write_record(outdir: Path, argv) -> None:
    """The record train.py writes for ``argv``."""
    run_record.write_record(str(outdir), config_of(argv), argv, command_digest=train.command_digest(args_of(argv)))


FINISHED_LOG = "Finish training\nDeploy the last-epoch model\n=> result\n* accuracy: 61.50%\n"


def make_folder(outdir: Path, case: str) -> None:
    """A run folder in one of the situations the readers must agree on."""
    if case == "absent":
        return
    outdir.mkdir(parents=True)
    if case == "indented mark":  # a line that merely contains the mark is not the result block
        (outdir / "log.txt").write_text("Finish training\n  => result (quoted)\n* accuracy: 1.0%\n")
        return
    if case == "upstream, finished":  # no record: judged by the log alone
        (outdir / "log.txt").write_text(FINISHED_LOG)
        return
    if case == "resumed, result in an older log":
        (outdir / "log.txt-2024-01-01-00-00-00").write_text(FINISHED_LOG)
        (outdir / "log.txt").write_text("resumed\n")
    else:
        (outdir / "log.txt").write_text(FINISHED_LOG if "finished" in case else "epoch [1/2] batch [1/1]\n")
    opts = ("OPTIM.LR", "0.5") if "other config" in case else ()
    write_record(outdir, command(outdir, *opts))


CASES = {  # case -> finished for command(outdir)
    "absent": False,
    "indented mark": False,
    "upstream, finished": True,
    "partial": False,
    "finished": True,
    "resumed, result in an older log": True,
    "finished, other config": False,
    "partial, other config": False,
}


@pytest.mark.parametrize("case", list(CASES))
def test_every_reader_agrees_on_finished(tmp_path, case, monkeypatch):
    output = tmp_path / "out"
    outdir = output / RUN_ID
    make_folder(outdir, case)
    argv = command(outdir)
    expected = CASES[case]

    # scripts/lib.sh's `finished`, given the run's train.py command (as `launch` does).
    bash = subprocess.run(["bash", "-c", 'TRAINER=CoOp; source scripts/lib.sh; finished "$@"', "_", str(outdir),
                           *argv[2:]], cwd=REPO, capture_output=True, text=True,
                          env=dict(os.environ, PYTHON=sys.executable))
    assert (bash.returncode == 0) is expected, bash.stderr
    assert (bash.returncode == 3) is ("other config" in case)  # stale, as train.py will say
    # train.py itself and the definition it uses.
    monkeypatch.chdir(REPO)
    assert (train.finished_cli([str(outdir), *argv[2:]]) == 0) is expected
    assert run_record.run_state(str(outdir), config_of(argv)).finished is expected
    # The runner: done, stale or pending.
    run = Run(run_id=RUN_ID, outdir=str(outdir), trainer="CoOp", folder="coop", script="base2new_train.sh",
              args=["synthetic", "1"], argv=argv, protocols=["base2new"])
    state = run_status(run, None, {}).state
    assert state == (DONE if expected else STALE if "other config" in case else PENDING)
    # The runner's report (its plan says what each folder should hold) and parse_test_res's library.
    if outdir.exists():
        save_plan(Plan(output=str(output), env={}, grid={"case": case}, runs=[run]))
        found = collect_base2new(str(output / "base2new"), judge=planned_judge(str(output)))
        reported = bool(found) and found[("CoOp", "synthetic", "shots_4")]["synthetic"]["base"] == {"seed1": 61.5}
        # A table reads the run's current log.txt (where a resumed run prints its result).
        assert reported is (expected and case != "resumed, result in an older log")


def test_the_sweep_skips_only_finished_runs_of_its_own_config(tmp_path, monkeypatch):
    out = tmp_path / "run"
    make_folder(out, "finished, other config")
    calls = []
    fake = SimpleNamespace(STDOUT=subprocess.STDOUT,
                           run=lambda *a, **k: calls.append(a) or subprocess.CompletedProcess(a, 0))
    monkeypatch.setattr(sempt_sweep, "subprocess", fake)  # train.py is not under test here
    monkeypatch.chdir(REPO)
    sempt_sweep.run(command(out)[2:], out, threads=1)
    assert len(calls) == 1  # stale: handed to train.py (which names the keys), not skipped
    write_record(out, command(out))
    sempt_sweep.run(command(out)[2:], out, threads=1)
    assert len(calls) == 1  # finished by its own config: skipped


def test_the_runner_shows_a_run_of_other_opts_as_stale_and_reruns_it_only_when_asked(tmp_path, bench_env):
    """Issue 22: `run --opts OPTIM.MAX_EPOCH 50 OPTIM.LR 0.1 --dry-run` listed runs made with
    OPTIM.MAX_EPOCH 3 as [done]."""
    out = tmp_path / "out"
    grid = ["--protocol", "base2new", "--datasets", "synthetic", "--methods", "CoOp", "--seeds", "1"]
    first = benchmark("run", *grid, "--opts", "OPTIM.MAX_EPOCH", "1", "--output", str(out), "--no-progress",
                      env=bench_env)
    assert first.returncode == 0, first.stdout + first.stderr
    train_dir = out / RUN_ID
    assert run_record.read_record(str(train_dir))["keys"]["OPTIM.MAX_EPOCH"] == 1

    same = benchmark("run", *grid, "--opts", "OPTIM.MAX_EPOCH", "1", "--output", str(out), "--dry-run", env=bench_env)
    assert "Totals: 2 done, 0 running, 0 queued, 0 failed, 0 pending (of 2)" in same.stdout, same.stdout
    other = ["--opts", "OPTIM.MAX_EPOCH", "2", "OPTIM.LR", "0.1"]
    dry = benchmark("run", *grid, *other, "--output", str(out), "--dry-run", env=bench_env)
    assert dry.returncode == 0, dry.stderr
    assert "[stale  ] scripts/coop/base2new_train.sh synthetic 1 OPTIM.MAX_EPOCH 2 OPTIM.LR 0.1" in dry.stdout
    assert "OPTIM.LR: 0.002 -> 0.1; OPTIM.MAX_EPOCH: 1 -> 2" in dry.stdout, dry.stdout
    assert "0 pending, 2 stale (of 2)" in dry.stdout and "--rerun-stale" in dry.stdout

    starts = len([e for e in events(out) if e["event"] == "start"])
    refused = benchmark("run", *grid, *other, "--output", str(out), "--no-progress", env=bench_env)
    assert refused.returncode == 1 and "2 stale run(s)" in refused.stdout, refused.stdout + refused.stderr
    assert len([e for e in events(out) if e["event"] == "start"]) == starts  # nothing was run
    assert run_record.read_record(str(train_dir))["keys"]["OPTIM.MAX_EPOCH"] == 1  # untouched
    status = benchmark("status", "--output", str(out), env=bench_env)
    assert re.search(r"stale\s+base2new/train_base/\S+seed1\s+\[made with another config: OPTIM.LR", status.stdout)
    report = benchmark("report", "--output", str(out), "--format", "csv", env=bench_env)
    assert report.returncode == 2 and "no finished runs" in report.stderr  # both left out ...
    assert report.stderr.count("note: left out") == 2 and "rerun it with run --rerun-stale" in report.stderr

    again = benchmark("run", *grid, *other, "--rerun-stale", "--output", str(out), "--no-progress", env=bench_env)
    assert again.returncode == 0, again.stdout + again.stderr
    assert again.stdout.count("Stale run moved aside") == 2
    assert run_record.read_record(str(train_dir))["keys"]["OPTIM.MAX_EPOCH"] == 2
    aside = [p for p in train_dir.parent.iterdir() if p.name.startswith(".seed1.replaced-")]
    assert len(aside) == 1 and run_record.read_record(str(aside[0]))["keys"]["OPTIM.MAX_EPOCH"] == 1
    report = benchmark("report", "--output", str(out), "--format", "csv", env=bench_env)
    assert report.returncode == 0 and "base2new,CoOp,synthetic,4,synthetic,base," in report.stdout
    assert "left out" not in report.stderr
