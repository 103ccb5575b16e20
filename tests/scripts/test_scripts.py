"""The benchmark scripts as users run them (bash, from another directory), on the synthetic world."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def run(script: str, *args: str, env: dict, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(REPO / "scripts" / script), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


@pytest.fixture()
def env(tmp_path, synthetic_data_root):
    env = dict(os.environ, DATA=synthetic_data_root, OUTPUT=str(tmp_path / "output"),
               PYTHON=sys.executable, SEMPT_CACHE_DIR=str(tmp_path / "cache"), OMP_NUM_THREADS="1")
    env.pop("CFG", None)  # the scripts pick each method's synthetic config by themselves
    return env


def test_data_must_be_set(tmp_path, env):
    # A real dataset needs DATA (the synthetic world does not: tests/scripts/test_synthetic_data_default.py).
    env = {k: v for k, v in env.items() if k != "DATA"}
    result = run("coop/base2new_train.sh", "eurosat", "1", env=env, cwd=tmp_path)
    assert result.returncode != 0
    assert "DATA is not set" in result.stderr
    env["DATA"] = str(tmp_path / "nowhere")
    result = run("coop/base2new_train.sh", "eurosat", "1", env=env, cwd=tmp_path)
    assert result.returncode != 0 and "is not a directory" in result.stderr


def test_sempt_base_to_new_from_another_directory(tmp_path, env):
    out = tmp_path / "output" / "base2new"
    common = "synthetic/shots_16/SemPT/synthetic_maple/seed1"
    train = run("sempt/base2new_train.sh", "synthetic", "1", "OPTIM.MAX_EPOCH", "2", env=env, cwd=tmp_path)
    assert train.returncode == 0, train.stdout[-2000:] + train.stderr[-2000:]
    assert (out / "train_base" / common / "prompt_learner" / "model.pth.tar-2").is_file()
    assert "=> result" in (out / "train_base" / common / "log.txt").read_text()

    # The test script loads the last epoch of the config (here overridden to 2).
    test = run("sempt/base2new_test.sh", "synthetic", "1", "OPTIM.MAX_EPOCH", "2", env=env, cwd=tmp_path)
    assert test.returncode == 0, test.stdout[-2000:] + test.stderr[-2000:]
    log = (out / "test_new" / common / "log.txt").read_text()
    assert "model.pth.tar-2" in log and "20 use attribute-enhanced embeddings" in log

    again = run("sempt/base2new_train.sh", "synthetic", "1", "OPTIM.MAX_EPOCH", "2", env=env, cwd=tmp_path)
    assert again.returncode == 0 and "finished; skip this job" in again.stdout

    table = subprocess.run([sys.executable, str(REPO / "parse_test_res.py"), "--base2new", str(out)],
                           capture_output=True, text=True, cwd=tmp_path)
    assert table.returncode == 0 and "SemPT" in table.stdout and "Base" in table.stdout


def test_test_script_needs_the_trained_model(tmp_path, env):
    result = run("coop/base2new_test.sh", "synthetic", "2", env=env, cwd=tmp_path)
    assert result.returncode != 0 and "run base2new_train.sh synthetic 2 first" in result.stderr


def test_ablation_runs_a_variant_into_its_own_folder(tmp_path, env):
    result = run("sempt/ablation.sh", "synthetic", "1", "uniform_weighting", env=dict(env, SHOTS="4"), cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    variant = tmp_path / "output" / "ablation" / "uniform_weighting" / "base2new"
    log = (variant / "test_new" / "synthetic/shots_4/SemPT/synthetic_maple/seed1" / "log.txt").read_text()
    assert "TRAINER.SEMPT.WEIGHTING', 'uniform'" in log or "WEIGHTING: uniform" in log
    assert "Mean attribute weights on the true class (uniform)" in log
    bad = run("sempt/ablation.sh", "synthetic", "1", "no_such_variant", env=env, cwd=tmp_path)
    assert bad.returncode != 0 and "unknown variant" in bad.stderr


METHODS = sorted(p.parent.name for p in (REPO / "scripts").glob("*/method.sh"))


def test_every_method_has_the_five_scripts():
    assert {"coop", "cocoop", "kgcoop", "zsclip", "sempt"} <= set(METHODS)
    for method in METHODS:
        for script in ("base2new_train", "base2new_test", "xd_train", "xd_test", "fewshot"):
            path = REPO / "scripts" / method / f"{script}.sh"
            assert path.is_file() and os.access(path, os.X_OK), path


def test_zero_shot_fewshot_row_evaluates_without_training(tmp_path, env):
    result = run("zsclip/fewshot.sh", "synthetic", "4", "1", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    log = (tmp_path / "output" / "fewshot" / "synthetic" / "shots_4" / "ZeroshotCLIP" / "synthetic" / "seed1"
           / "log.txt").read_text()
    assert "=> result" in log and "Finish training" not in log


@pytest.mark.parametrize("method", METHODS)
def test_every_method_runs_base_to_new_on_the_synthetic_world_as_is(tmp_path, env, method):
    """No CFG: on the synthetic world every script picks the method's synthetic config (SemPT: the
    one its DATASET_CFGS names, synthetic_maple)."""
    env = dict(env, SHOTS="2")
    for part in ("train", "test"):
        result = run(f"{method}/base2new_{part}.sh", "synthetic", "1", "OPTIM.MAX_EPOCH", "1", env=env, cwd=tmp_path)
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    logs = list((tmp_path / "output" / "base2new" / "test_new" / "synthetic" / "shots_2").glob("*/synthetic*/seed1/log.txt"))
    assert len(logs) == 1 and "=> result" in logs[0].read_text()


def test_cross_dataset_scripts_run_on_the_synthetic_world(tmp_path, env):
    env = dict(env, SHOTS="2")
    train = run("coop/xd_train.sh", "synthetic", "1", "OPTIM.MAX_EPOCH", "1", env=env, cwd=tmp_path)
    assert train.returncode == 0, train.stdout[-2000:] + train.stderr[-2000:]
    assert (tmp_path / "output" / "synthetic" / "CoOp" / "synthetic_2shots" / "seed1" / "log.txt").is_file()
    test = run("coop/xd_test.sh", "synthetic", "1", "OPTIM.MAX_EPOCH", "1", env=env, cwd=tmp_path)
    assert test.returncode == 0, test.stdout[-2000:] + test.stderr[-2000:]
    log = tmp_path / "output" / "evaluation" / "CoOp" / "synthetic_2shots_from_synthetic" / "synthetic" / "seed1" / "log.txt"
    assert "=> result" in log.read_text()


def printing_python(tmp_path: Path) -> str:
    """A PYTHON for the scripts that prints the train.py command instead of running it
    (and runs the scripts' ``python -c`` config reads)."""
    path = tmp_path / "printing_python"
    path.write_text(f'#!/bin/bash\nif [[ "$1" == -c ]]; then exec {sys.executable} "$@"; fi\necho "$@"\n')
    path.chmod(0o755)
    return str(path)


def fork_repo(tmp_path: Path, method_vars: str, configs, datasets) -> Path:
    """A fork's repository with our lib.sh and a method "Mine": its method.sh sets
    ``method_vars``; it has the (empty) ``configs`` and dataset configs ``datasets``."""
    repo = tmp_path / "repo"
    (repo / "scripts" / "mine").mkdir(parents=True)
    (repo / "configs" / "trainers" / "Mine").mkdir(parents=True)
    (repo / "configs" / "datasets").mkdir(parents=True)
    (repo / "scripts" / "lib.sh").write_text((REPO / "scripts" / "lib.sh").read_text())
    (repo / "scripts" / "mine" / "method.sh").write_text(
        f'TRAINER=Mine\n{method_vars}\nsource "$(dirname "${{BASH_SOURCE[0]}}")/../lib.sh"\n')
    (repo / "scripts" / "mine" / "base2new_train.sh").write_text(
        'source "$(dirname "$0")/method.sh"\nrun_base2new_train "$@"\n')
    for cfg in configs:
        (repo / "configs" / "trainers" / "Mine" / f"{cfg}.yaml").write_text("{}\n")
    for dataset in datasets:
        (repo / "configs" / "datasets" / f"{dataset}.yaml").write_text("{}\n")
    return repo


def test_a_method_without_a_synthetic_config_says_so(tmp_path, env):
    """A fork's method with real-data configs only: the scripts name the missing file and the fix."""
    repo = fork_repo(tmp_path, "DEFAULT_CFG=vit_b16", ["vit_b16"], [])
    (repo / "configs" / "datasets" / "synthetic.yaml").write_text("DATASET:\n  NAME: Synthetic\n")
    result = subprocess.run(["bash", str(repo / "scripts" / "mine" / "base2new_train.sh"), "synthetic", "1"],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "Mine has no synthetic config (configs/trainers/Mine/synthetic.yaml)" in result.stderr
    assert "or set CFG" in result.stderr


def test_dataset_cfgs_give_datasets_their_own_config(tmp_path, env):
    """DATASET_CFGS (e.g. TCP's 25-epoch SUN397/ImageNet config) wins over the defaults, CFG over it."""
    repo = fork_repo(tmp_path, 'DEFAULT_CFG=long\nDEFAULT_CFG_IMAGENET=inet\nDATASET_CFGS="xsun397=wrong sun397=short"',
                     ["long", "inet", "short", "wrong"], ["sun397", "imagenet", "caltech101"])
    def config_of(dataset, **extra):
        result = subprocess.run(["bash", str(repo / "scripts" / "mine" / "base2new_train.sh"), dataset, "1"],
                                cwd=tmp_path, env=dict(env, PYTHON=printing_python(tmp_path), **extra),
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        return result.stdout.split("--config-file ")[1].split()[0]

    assert config_of("sun397") == "configs/trainers/Mine/short.yaml"
    assert config_of("imagenet") == "configs/trainers/Mine/inet.yaml"
    assert config_of("caltech101") == "configs/trainers/Mine/long.yaml"
    assert config_of("sun397", CFG="long") == "configs/trainers/Mine/long.yaml"


def test_tcp_trains_sun397_and_imagenet_for_25_epochs(tmp_path, env):
    """Upstream TCP's train.py forces 25 epochs on SUN397 and ImageNet and its scripts load
    epoch 25 there: here those datasets have a 25-epoch config, and the test loads its epoch."""
    env = dict(env, PYTHON=printing_python(tmp_path))
    for dataset, cfg, epochs in (("sun397", "vit_b16_ep25_ctxv1", 25), ("imagenet", "vit_b16_ep25_ctxv1", 25),
                                 ("dtd", "vit_b16_ep100_ctxv1", 50)):
        (tmp_path / "output" / "base2new" / "train_base" / dataset / "shots_16" / "TCP" / cfg / "seed1").mkdir(parents=True)
        result = run("tcp/base2new_test.sh", dataset, "1", env=env, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert f"--config-file configs/trainers/TCP/{cfg}.yaml" in result.stdout
        assert f"--load-epoch {epochs} " in result.stdout
    xd = run("tcp/xd_train.sh", "1", env=env, cwd=tmp_path)
    assert xd.returncode == 0 and "--config-file configs/trainers/TCP/vit_b16_ep25_ctxv1.yaml" in xd.stdout


# ------------------------------------------------------------------ plan mode
RECORDER = """#!/bin/bash
# Stands in for python: reads configs like python (-c), records the train.py command instead of running it.
if [[ "$1" == "-c" ]]; then exec {python} "$@"; fi
printf '%s\\n' "$@" > "$RECORD"
"""


def plan_record(script: str, *args: str, env: dict, cwd: Path) -> dict:
    import json

    result = run(script, *args, env=dict(env, SEMPT_PLAN="1"), cwd=cwd)
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if line.startswith("SEMPT_PLAN ")]
    assert len(lines) == 1, result.stdout
    return json.loads(lines[0][len("SEMPT_PLAN "):])


@pytest.mark.parametrize("script,args", [
    ("coop/base2new_train.sh", ("synthetic", "1")),
    ("sempt/base2new_test.sh", ("synthetic", "2", "OPTIM.MAX_EPOCH", "3")),
    ("zsclip/base2new_test.sh", ("synthetic", "1")),
    ("kgcoop/xd_train.sh", ("synthetic", "1")),
    ("cocoop/xd_test.sh", ("synthetic", "1")),
    ("sempt/fewshot.sh", ("synthetic", "4", "3", "TRAINER.SEMPT.CTX_INIT", 'a "quoted" \\ tab\there')),
])
def test_plan_mode_prints_exactly_the_command_the_script_runs(tmp_path, env, script, args):
    recorder = tmp_path / "python"
    recorder.write_text(RECORDER.format(python=sys.executable))
    recorder.chmod(0o755)
    env = dict(env, PYTHON=str(recorder), RECORD=str(tmp_path / "argv.txt"))
    record = plan_record(script, *args, env=env, cwd=tmp_path)
    assert record["finished"] is False and record["cwd"] == str(REPO)
    if "test" in script and "zsclip" not in script:  # the model is missing: plan mode does not care
        assert "--model-dir" in record["argv"]
        model_dir = Path(record["argv"][record["argv"].index("--model-dir") + 1])
        model_dir.mkdir(parents=True)  # the real run needs it to exist
    result = run(script, *args, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    executed = (tmp_path / "argv.txt").read_text().split("\n")[:-1]
    assert [str(recorder)] + executed == record["argv"]
    assert record["argv"][record["argv"].index("--output-dir") + 1] == record["outdir"]
    assert record["source"] == ("synthetic" if "xd_" in script else "")


def test_plan_mode_reports_a_finished_run_and_changes_nothing(tmp_path, env):
    record = plan_record("coop/base2new_train.sh", "synthetic", "1", env=env, cwd=tmp_path)
    outdir = Path(record["outdir"])
    assert not outdir.exists()  # planning creates nothing
    outdir.mkdir(parents=True)
    (outdir / "log.txt").write_text("Finish training\n=> result\n* accuracy: 50.0%\n")
    assert plan_record("coop/base2new_train.sh", "synthetic", "1", env=env, cwd=tmp_path)["finished"] is True
