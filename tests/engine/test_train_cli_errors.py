"""train.py as a command (issue 22): user errors as one message, flags after the KEY VALUE
pairs, the CPU threads and loader workers said in the log."""
import os
import os.path as osp
import subprocess
import sys

import pytest

import train
from tests.engine.test_train_script import TOY_OPTS

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


@pytest.fixture(autouse=True)
def offline_components(monkeypatch):
    monkeypatch.setattr(train, "register_components", lambda: None)
    monkeypatch.setattr(train, "extend_cfg", lambda cfg: None)
    monkeypatch.setattr(train, "collect_env_info", lambda: "env")
    monkeypatch.delenv(train.TRACEBACK_ENV, raising=False)


def toy_args(toy_root, out, *extra):
    return ["--root", toy_root, "--trainer", "EngineToyTrainer", "--output-dir", str(out), *TOY_OPTS, *extra]


def test_a_user_error_prints_its_message_alone(toy_root, tmp_path, capsys):
    code = train.console_main(toy_args(toy_root, tmp_path / "out", "DATALOADER.TRAIN_X.BATCH_SIZE", "0"))
    err = capsys.readouterr().err
    assert code == 1
    assert "error: DATALOADER.TRAIN_X.BATCH_SIZE is 0; a batch size must be at least 1" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 2
    assert "Traceback" in open(tmp_path / "out" / "log.txt").read()  # the log keeps it


def test_the_traceback_on_request(toy_root, tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="DATALOADER.TRAIN_X.BATCH_SIZE"):
        train.console_main(toy_args(toy_root, tmp_path / "a", "DATALOADER.TRAIN_X.BATCH_SIZE", "0", "--traceback"))
    monkeypatch.setenv(train.TRACEBACK_ENV, "1")
    with pytest.raises(ValueError, match="DATALOADER.TRAIN_X.BATCH_SIZE"):
        train.console_main(toy_args(toy_root, tmp_path / "b", "DATALOADER.TRAIN_X.BATCH_SIZE", "0"))


def test_a_config_error_before_the_run_starts_is_one_message(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("OPTIM:\n  LR: 0.1\n MAX_EPOCH: 2\n")
    assert train.console_main(["--config-file", str(bad), "--output-dir", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert f'error: "{bad}" is not valid YAML' in err and "Traceback" not in err


def test_flags_after_the_config_overrides_are_accepted():
    parser = train.build_parser()
    args = train.parse_arguments(parser, ["--trainer", "CoOp", "OPTIM.LR", "0.1", "--load-epoch", "5", "--eval-only",
                                          "OPTIM.MAX_EPOCH", "3", "--transforms", "random_flip", "normalize",
                                          "--model-dir=out/m"])
    assert (args.load_epoch, args.eval_only, args.model_dir) == (5, True, "out/m")
    assert args.transforms == ["random_flip", "normalize"]
    assert args.opts == ["OPTIM.LR", "0.1", "OPTIM.MAX_EPOCH", "3"]
    # A value may start with "--": only a token where a KEY stands is a flag.
    assert train.parse_arguments(parser, ["TRAINER.COOP.CTX_INIT", "--"]).opts == ["TRAINER.COOP.CTX_INIT", "--"]


def test_an_unknown_flag_after_the_overrides_is_named_as_such(capsys):
    with pytest.raises(SystemExit):
        train.parse_arguments(train.build_parser(), ["OPTIM.LR", "0.1", "--load-epok", "5"])
    assert "unknown flag '--load-epok' among the KEY VALUE config overrides" in capsys.readouterr().err


def test_the_log_says_the_cpu_threads_and_loader_workers(toy_root, tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    train.console_main(toy_args(toy_root, tmp_path / "out", "DATALOADER.NUM_WORKERS", "0"))
    log = open(tmp_path / "out" / "log.txt").read()
    assert "CPU: 1 thread(s) (from OMP_NUM_THREADS); data-loader workers: 0; CPUs allocated:" in log


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs Linux affinity masks")
def test_a_slurm_allocation_narrows_torch_threads_and_workers(toy_root, tmp_path, monkeypatch):
    import torch

    before = torch.get_num_threads()
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "1")
    try:
        train.console_main(toy_args(toy_root, tmp_path / "out", "DATALOADER.NUM_WORKERS", "8"))
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    log = open(tmp_path / "out" / "log.txt").read()
    assert ("CPU: 1 thread(s) (from SLURM_CPUS_PER_TASK=1); data-loader workers: 1 (DATALOADER.NUM_WORKERS 8, "
            "capped); CPUs allocated: 1 (SLURM_CPUS_PER_TASK=1)") in log


def test_from_outside_a_user_error_is_a_short_message(tmp_path):
    """The real command line: no traceback, exit code 1, the key named."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env.pop(train.TRACEBACK_ENV, None)
    result = subprocess.run(
        [sys.executable, "train.py", "--root", str(tmp_path / "data"), "--trainer", "CoOp",
         "--dataset-config-file", "configs/datasets/synthetic.yaml", "--config-file",
         "configs/trainers/CoOp/synthetic.yaml", "--output-dir", str(tmp_path / "out"),
         "DATALOADER.TRAIN_X.BATCH_SIZE", "0", "--load-epoch", "5"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1, result.stderr[-2000:]
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) <= 3, result.stderr
    assert "DATALOADER.TRAIN_X.BATCH_SIZE is 0" in result.stderr
    assert "load_epoch: 5" in result.stdout  # the flag after the overrides was taken
