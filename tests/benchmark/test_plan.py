"""Planning: the grid becomes exactly the runs the scripts make, with their dependencies."""
from __future__ import annotations

import os
import re
import sys
import subprocess

import pytest
import yaml

from tools.grid.grid import build_grid, load_grid_file
from tools.grid.methods import Method, discover_methods, select_methods
from tools.grid.plan import PlanError, build_plan, script_variables
from tools.grid.state import is_finished

from .conftest import REPO, benchmark


def plan(tmp_path, bench_env, **grid):
    return build_plan(build_grid(**grid), str(tmp_path / "out"), environ=bench_env)


def test_methods_are_discovered_from_the_scripts(tmp_path):
    found = {m.trainer: m.folder for m in discover_methods()}
    assert {"ZeroshotCLIP": "zsclip", "CoOp": "coop", "CoCoOp": "cocoop", "KgCoOp": "kgcoop",
            "SemPT": "sempt"}.items() <= found.items()
    # A method added later is found by its method.sh alone.
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "method.sh").write_text("# Mine\nTRAINER=MyMethod  # the trainer\nsource lib.sh\n")
    assert discover_methods(tmp_path) == [Method("mine", "MyMethod")]
    assert select_methods(["mymethod"], discover_methods(tmp_path)) == [Method("mine", "MyMethod")]
    with pytest.raises(ValueError, match="unknown method 'nope' in --methods; available: MyMethod"):
        select_methods(["nope"], discover_methods(tmp_path))


def test_base_to_novel_runs_and_their_order(tmp_path, bench_env):
    p = plan(tmp_path, bench_env, protocols=["base2new"], methods=["CoOp", "zsclip"], datasets=["synthetic"],
             seeds=[1, 2])
    ids = [r.run_id for r in p.runs]
    assert len(ids) == 8 and len(set(ids)) == 8
    by_id = p.by_id()
    train = "base2new/train_base/synthetic/shots_4/CoOp/synthetic/seed2"
    test = "base2new/test_new/synthetic/shots_4/CoOp/synthetic/seed2"
    assert by_id[test].deps == [train] and ids.index(train) < ids.index(test)
    epochs = yaml.safe_load((REPO / "configs/trainers/CoOp/synthetic.yaml").read_text())["OPTIM"]["MAX_EPOCH"]
    assert by_id[test].argv[by_id[test].argv.index("--load-epoch") + 1] == str(epochs)  # the synthetic config's
    zs_test = by_id["base2new/test_new/synthetic/shots_4/ZeroshotCLIP/synthetic/seed1"]
    assert zs_test.deps == [] and "--eval-only" in zs_test.argv and "--model-dir" not in zs_test.argv
    assert by_id[train].outdir == str(tmp_path / "out" / train)
    assert by_id[train].invocation.describe() == "scripts/coop/base2new_train.sh synthetic 2"
    assert {tuple(r.run_id for r in chain) for chain in p.chains()} >= {(train, test)}


def test_cross_dataset_and_dg_share_one_training_per_method_and_seed(tmp_path, bench_env):
    p = build_plan(build_grid({"datasets": {"xd": ["caltech101", "dtd"], "dg": ["imagenet_r"]}},
                              protocols=["xd", "dg"], methods=["SemPT", "ZeroshotCLIP"], seeds=[1]),
                   str(tmp_path / "out"), environ=bench_env)
    trainings = [r for r in p.runs if r.script == "xd_train.sh"]
    assert sorted(r.run_id for r in trainings) == [
        "imagenet/SemPT/vit_b16_ep50_ctxv1_4shots/seed1", "imagenet/ZeroshotCLIP/vit_b16_4shots/seed1"]
    sempt_train = next(r for r in trainings if r.trainer == "SemPT")
    assert sempt_train.args[:2] == ["imagenet", "1"] and set(sempt_train.protocols) == {"cross_dataset",
                                                                                        "domain_generalization"}
    evaluations = [r for r in p.runs if r.script == "xd_test.sh"]
    assert len(evaluations) == 6
    for run in evaluations:
        assert run.deps == ([sempt_train.run_id] if run.trainer == "SemPT" else [])
    # On the synthetic world the scripts train on the synthetic world itself.
    p = plan(tmp_path, bench_env, protocols=["xd"], methods=["CoOp"], datasets=["synthetic"], seeds=[1])
    assert [r.run_id for r in p.runs] == ["synthetic/CoOp/synthetic_4shots/seed1",
                                          "evaluation/CoOp/synthetic_4shots_from_synthetic/synthetic/seed1"]


def test_fewshot_runs_cover_the_shot_counts_and_overrides_reach_every_run(tmp_path, bench_env):
    # NCTX is read by scripts/coop/fewshot.sh only: the scripts' own switches pass through as for a user.
    p = build_plan(build_grid({"method_opts": {"KgCoOp": ["TRAINER.KGCOOP.W", 2.0]}}, protocols=["fewshot"],
                              methods=["CoOp", "KgCoOp"], datasets=["synthetic"], seeds=[1], shots=[1, 4],
                              opts=["OPTIM.MAX_EPOCH", "1"]),
                   str(tmp_path / "out"), environ=dict(bench_env, NCTX="8"))
    assert sorted(r.run_id for r in p.runs) == sorted(
        [f"fewshot/synthetic/shots_{s}/CoOp/synthetic_nctx8_cscFalse_ctpend/seed1" for s in (1, 4)] +
        [f"fewshot/synthetic/shots_{s}/KgCoOp/synthetic/seed1" for s in (1, 4)])
    assert p.env["NCTX"] == "8"
    for run in p.runs:
        assert run.args[-2:] == (["TRAINER.KGCOOP.W", "2.0"] if run.trainer == "KgCoOp" else ["OPTIM.MAX_EPOCH", "1"])
        assert "OPTIM.MAX_EPOCH" in run.argv


def test_grid_files_and_bad_input_get_clear_errors(tmp_path, bench_env):
    grid_file = tmp_path / "grid.yaml"
    grid_file.write_text("protocols: [b2n]\nmethods: [CoOp]\ndatasets: [synthetic]\nseeds: [3]\n")
    grid = build_grid(load_grid_file(str(grid_file)), seeds=[5])
    assert (grid.protocols, grid.methods, grid.datasets_for("base2new"), grid.seeds) == (
        ["base2new"], ["CoOp"], ["synthetic"], [5])  # flags win over the file
    grid_file.write_text("protocol: [base2new]\n")
    with pytest.raises(ValueError, match=rf"--grid {re.escape(str(grid_file))}: unknown key\(s\) \['protocol'\]"):
        load_grid_file(str(grid_file))
    with pytest.raises(ValueError, match="KEY VALUE pairs"):
        build_grid(protocols=["base2new"], opts=["OPTIM.MAX_EPOCH"])
    with pytest.raises(ValueError, match=r"unknown dataset\(s\) \['nope'\]"):
        build_grid(protocols=["base2new"], datasets=["nope"])
    with pytest.raises(PlanError, match="method_opts names 'SemPT', which is not among the selected methods"):
        build_plan(build_grid({"method_opts": {"SemPT": ["A", "1"]}}, protocols=["base2new"], methods=["CoOp"],
                              datasets=["synthetic"]), str(tmp_path), environ=bench_env)
    with pytest.raises(PlanError, match="DATA is not set"):
        build_plan(build_grid(protocols=["base2new"]), str(tmp_path), environ={})


def test_the_variables_the_scripts_read_are_captured(tmp_path):
    names = script_variables()
    assert {"DATA", "OUTPUT", "SHOTS", "CFG", "SOURCE", "PYTHON", "FEWSHOT_TAG", "NCTX"} <= set(names)
    assert "SEMPT_PLAN" not in names
    (tmp_path / "new").mkdir()
    (tmp_path / "new" / "fewshot.sh").write_text('K="${MY_SWITCH:-3}"\n')
    assert "MY_SWITCH" in script_variables(tmp_path)


@pytest.mark.parametrize("logs,expected", [
    ({}, False),
    ({"log.txt": "epoch [1/5] ...\n"}, False),
    ({"log.txt": "Finish training\n=> result\n* accuracy: 50.0%\n"}, True),
    ({"log.txt": "resumed...\n", "log.txt-2024-01-01-00-00-00": "=> result\n"}, True),
    ({"log.txt": "  => result (indented: not the result block)\n"}, False),
])
def test_done_means_what_lib_sh_finished_means(tmp_path, logs, expected):
    run_dir = tmp_path / "run dir"
    run_dir.mkdir()
    for name, text in logs.items():
        (run_dir / name).write_text(text)
    check = subprocess.run(["bash", "-c", 'TRAINER=X; source scripts/lib.sh; finished "$1"', "_", str(run_dir)],
                           cwd=REPO, capture_output=True, text=True, env=dict(os.environ, PYTHON=sys.executable))
    assert (check.returncode == 0) is expected
    assert is_finished(str(run_dir)) is expected


def test_dry_run_prints_the_plan_and_what_is_done_and_writes_nothing(tmp_path, bench_env):
    out = tmp_path / "out"
    done = out / "base2new/train_base/synthetic/shots_4/CoOp/synthetic/seed1"
    done.mkdir(parents=True)
    (done / "log.txt").write_text("Finish training\n=> result\n* accuracy: 40.00%\n")
    result = benchmark("run", "--protocol", "base2new", "--methods", "CoOp", "--datasets", "synthetic",
                       "--seeds", "1", "2", "--output", str(out), "--dry-run", env=bench_env)
    assert result.returncode == 0, result.stderr
    assert "Plan: 4 runs under" in result.stdout
    assert "[done   ] scripts/coop/base2new_train.sh synthetic 1" in result.stdout
    assert "[pending] scripts/coop/base2new_test.sh synthetic 1  (after base2new/train_base" in result.stdout
    assert "Totals: 1 done, 0 running, 0 queued, 0 failed, 3 pending (of 4)" in result.stdout
    assert not (out / "benchmark").exists()
    status = benchmark("status", "--output", str(out), env=bench_env)
    assert status.returncode == 2 and "no benchmark plan under" in status.stderr


def test_bad_flags_are_named(tmp_path, bench_env):
    result = benchmark("run", "--protocol", "base2new", "--methods", "CoOp", "--datasets", "synthetic",
                       "--output", str(tmp_path), "--gpus", "zero", env=bench_env)
    assert result.returncode == 2 and "--gpus zero: expected auto, none or GPU indices" in result.stderr
    result = benchmark("run", "--protocol", "fast", "--output", str(tmp_path), env=bench_env)
    assert result.returncode == 2 and "unknown protocol 'fast'" in result.stderr
