"""train.py run in-process on the toy trainer/dataset: flags, seed 0, refusal, eval-only."""
import os
import os.path as osp

import pytest

import train

TOY_OPTS = [
    "DATASET.NAME", "EngineToyDataset", "USE_CUDA", "False",
    "INPUT.SIZE", "(8, 8)", "INPUT.TRANSFORMS", "('random_flip', 'normalize')",
    "DATALOADER.NUM_WORKERS", "0", "DATALOADER.TRAIN_X.BATCH_SIZE", "4",
    "OPTIM.NAME", "sgd", "OPTIM.LR", "0.001", "OPTIM.MAX_EPOCH", "2", "OPTIM.LR_SCHEDULER", "cosine",
]


@pytest.fixture(autouse=True)
def offline_components(monkeypatch):
    # The real datasets/trainers packages and the slow env report are not under test here.
    monkeypatch.setattr(train, "register_components", lambda: None)
    monkeypatch.setattr(train, "extend_cfg", lambda cfg: None)
    monkeypatch.setattr(train, "collect_env_info", lambda: "env")


def run(argv):
    train.main(train.build_parser().parse_args(argv))


def test_seed_zero_is_honoured():
    args = train.build_parser().parse_args(["--seed", "0", "--trainer", "X"])
    assert train.setup_cfg(args).SEED == 0
    assert train.setup_cfg(train.build_parser().parse_args([])).SEED == -1


def test_train_then_refuse_then_eval_only(toy_root, tmp_path):
    out = str(tmp_path / "train_base")
    base = ["--root", toy_root, "--trainer", "EngineToyTrainer", "--seed", "1", "--output-dir", out]
    run(base + TOY_OPTS)
    log = open(osp.join(out, "log.txt")).read()
    assert "Setting fixed seed" not in log  # printed before the logger, as upstream
    for marker in ("** Arguments **", "** Config **", "Loading trainer: EngineToyTrainer", "Finish training", "=> result"):
        assert marker in log
    assert os.path.isfile(osp.join(out, "model", "model.pth.tar-2"))

    with pytest.raises(SystemExit, match="Refusing to overwrite the finished run"):
        run(base + TOY_OPTS)
    assert sorted(n for n in os.listdir(out) if n.startswith("log")) == ["log.txt"]

    ev = str(tmp_path / "test_new")
    eval_args = ["--root", toy_root, "--trainer", "EngineToyTrainer", "--output-dir", ev, "--eval-only"]
    with pytest.raises(FileNotFoundError, match="--model-dir"):
        run(eval_args + TOY_OPTS)
    assert "FileNotFoundError" in open(osp.join(ev, "log.txt")).read()  # the crash is in the log

    os.remove(osp.join(ev, "log.txt"))
    run(eval_args + ["--model-dir", out, "--load-epoch", "2"] + TOY_OPTS)
    text = open(osp.join(ev, "log.txt")).read()
    assert 'Loading weights to model from "' in text and "=> result" in text


def test_partial_run_is_resumed(toy_root, tmp_path):
    out = tmp_path / "partial"
    out.mkdir()
    (out / "log.txt").write_text("epoch [1/2] batch [1/4] ...\n")  # killed mid-run
    argv = ["--root", toy_root, "--trainer", "EngineToyTrainer", "--seed", "1", "--output-dir", str(out)] + TOY_OPTS
    run(argv)
    assert "Finish training" in (out / "log.txt").read_text()
    assert any(n.startswith("log.txt-") for n in os.listdir(out))  # the old log is kept


def test_a_run_stopped_before_its_final_test_is_finished_by_running_it_again(toy_root, tmp_path):
    """Killed between "Finish training" and its result: not finished (as the scripts judge it);
    running it again trains nothing and tests."""
    out = tmp_path / "run"
    argv = ["--root", toy_root, "--trainer", "EngineToyTrainer", "--seed", "1", "--output-dir", str(out)] + TOY_OPTS
    run(argv)
    full = (out / "log.txt").read_text()
    (out / "log.txt").write_text(full[:full.index("=> result")])  # the final test never printed
    run(argv)
    again = (out / "log.txt").read_text()
    assert "Training already finished (2/2 epochs)" in again and "=> result" in again
    with pytest.raises(SystemExit, match="Refusing to overwrite the finished run"):
        run(argv)
    # Without a final test (TEST.NO_TEST), the end of training is the end of the run.
    quiet = tmp_path / "no_test"
    argv = ["--root", toy_root, "--trainer", "EngineToyTrainer", "--seed", "1", "--output-dir", str(quiet)]
    run(argv + TOY_OPTS + ["TEST.NO_TEST", "True"])
    with pytest.raises(SystemExit, match="Refusing to overwrite the finished run"):
        run(argv + TOY_OPTS + ["TEST.NO_TEST", "True"])
