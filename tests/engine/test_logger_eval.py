"""Logger tee (stdout, stderr, warnings, tracebacks), evaluator and accuracy."""
import os
import sys
import warnings

import pytest
import torch

from dassl.config import get_cfg_default
from dassl.evaluation import build_evaluator, macro_f1_score
from dassl.metrics import compute_accuracy
from dassl.utils import setup_logger


def test_logger_tees_and_restores(tmp_path):
    out_dir = str(tmp_path / "run")
    before_out, before_err = sys.stdout, sys.stderr
    logger = setup_logger(out_dir)
    print("hello stdout")
    warnings.warn("careful now")
    sys.stderr.write("progress 10%\rprogress 100%\n")
    try:
        raise ValueError("boom")
    except ValueError as e:
        logger.log_exception(e)
    logger.close()
    assert sys.stdout is before_out and sys.stderr is before_err
    text = open(os.path.join(out_dir, "log.txt")).read()
    assert "hello stdout" in text and "careful now" in text
    assert "progress 100%\n" in text and "progress 10%" not in text
    assert "ValueError: boom" in text and "Traceback" in text

    # A second run keeps the first log under a timestamped name.
    logger = setup_logger(out_dir)
    print("second run")
    logger.close()
    names = sorted(os.listdir(out_dir))
    assert names[0] == "log.txt" and len(names) == 2 and names[1].startswith("log.txt-")
    assert open(os.path.join(out_dir, "log.txt")).read() == "second run\n"
    assert "hello stdout" in open(os.path.join(out_dir, names[1])).read()


def test_uncaught_exception_hook_output_is_logged(tmp_path):
    logger = setup_logger(str(tmp_path / "x.log"))
    try:
        raise KeyError("unhandled")
    except KeyError:
        sys.excepthook(*sys.exc_info())  # what the interpreter does for an uncaught error
    logger.close()
    assert "KeyError: 'unhandled'" in open(tmp_path / "x.log").read()


def test_classification_result_block(capsys):
    cfg = get_cfg_default()
    cfg.TEST.PER_CLASS_RESULT = True
    ev = build_evaluator(cfg, lab2cname={0: "a", 1: "b", 2: "c"})
    logits = torch.eye(3)[[0, 1, 1, 2, 0, 2]]
    labels = torch.tensor([0, 1, 2, 2, 0, 1])
    ev.process(logits[:3], labels[:3])
    ev.process(logits[3:], labels[3:])
    res = ev.evaluate()
    # per class: a tp2 fp0 fn0 -> 1; b tp1 fp1 fn1 -> 0.5; c tp1 fp1 fn1 -> 0.5
    assert res["macro_f1"] == pytest.approx(100 * 2 / 3)
    assert res["accuracy"] == pytest.approx(400 / 6)
    out = capsys.readouterr().out
    assert "=> result\n* total: 6\n* correct: 4\n* accuracy: 66.67%\n* error: 33.33%\n* macro_f1: 66.67%\n" in out
    assert "* class: 1 (b)\ttotal: 2\tcorrect: 1\tacc: 50.0%" in out
    assert macro_f1_score(torch.tensor([1, 1]), torch.tensor([0, 1])) == pytest.approx(2 / 3)


def test_compute_accuracy_topk():
    out = torch.tensor([[0.1, 0.7, 0.2], [0.5, 0.3, 0.2]])
    top1, top2 = compute_accuracy((out, None), torch.tensor([2, 0]), topk=(1, 2))
    assert top1.shape == (1,) and top1.item() == 50.0 and top2.item() == 100.0
