"""LinearProbe: the regression against closed forms and scipy, lpclip's search of C, and the trainer
end to end on a fabricated EuroSAT tree with a tiny random CLIP."""
from __future__ import annotations

import math
import os.path as osp

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.optimize import minimize

import train
from trainers.common.image_encoder import ImageEncoder
from trainers.linear_probe import (
    UPSTREAM_C_GRID,
    accuracy,
    fit_logistic_regression,
    search_regularisation,
)
from tests.utils.fabricate import make_eurosat_tree

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


# ----------------------------------------------------------------------------- the regression

def test_without_information_the_fit_is_the_class_frequencies():
    # Zero features: W = 0 (only the penalty acts on it) and softmax(b) = the class frequencies.
    labels = torch.tensor([0] * 6 + [1] * 3 + [2] * 1)
    weight, bias = fit_logistic_regression(torch.zeros(10, 4), labels, 3, c=1.0)
    assert torch.allclose(weight, torch.zeros_like(weight))
    assert torch.allclose(bias.softmax(0), torch.tensor([0.6, 0.3, 0.1], dtype=torch.float64), atol=1e-6)


def test_separable_clusters_are_separated():
    generator = torch.Generator().manual_seed(0)
    centres = torch.tensor([[4.0, 0.0], [-4.0, 0.0], [0.0, 4.0]])
    labels = torch.arange(3).repeat_interleave(8)
    x = centres[labels] + 0.5 * torch.randn(24, 2, generator=generator)
    weight, bias = fit_logistic_regression(x, labels, 3, c=100.0)
    assert accuracy(weight, bias, x, labels) == 100.0
    assert accuracy(weight, bias, centres, torch.arange(3)) == 100.0


def _reference_fit(x: np.ndarray, y: np.ndarray, k: int, c: float):
    """scikit-learn's objective written out in numpy, minimised by scipy's L-BFGS-B (what sklearn calls)."""
    n, d = x.shape
    onehot = np.eye(k)[y]

    def objective(theta):
        w, b = theta[: k * d].reshape(k, d), theta[k * d:]
        z = x @ w.T + b
        z = z - z.max(1, keepdims=True)
        log_p = z - np.log(np.exp(z).sum(1, keepdims=True))
        loss = 0.5 * (w * w).sum() - c * (onehot * log_p).sum()
        residual = c * (np.exp(log_p) - onehot)
        return loss, np.concatenate([(w + residual.T @ x).ravel(), residual.sum(0)])

    result = minimize(objective, np.zeros(k * d + k), jac=True, method="L-BFGS-B",
                      options={"maxiter": 10000, "gtol": 1e-10, "ftol": 1e-15})
    return result.x[: k * d].reshape(k, d), result.x[k * d:]


@pytest.mark.parametrize("c", [0.01, 1.0, 30.0])
def test_fit_equals_a_plain_reference_implementation(c):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(40, 5))
    y = rng.integers(0, 4, size=40)
    y[:4] = np.arange(4)
    ref_w, ref_b = _reference_fit(x, y, 4, c)
    weight, bias = fit_logistic_regression(torch.from_numpy(x), torch.from_numpy(y), 4, c)
    # The bias is defined up to a constant (softmax): compare centred biases.
    assert np.allclose(weight.numpy(), ref_w, atol=1e-5)
    assert np.allclose(bias.numpy() - bias.numpy().mean(), ref_b - ref_b.mean(), atol=1e-5)


def test_bad_c_is_refused():
    with pytest.raises(ValueError, match="C must be > 0"):
        fit_logistic_regression(torch.zeros(2, 2), torch.tensor([0, 1]), 2, c=0.0)


# ----------------------------------------------------------------------------- the search of C

def _upstream_search(score_of, grid, steps):
    """lpclip/linear_probe.py's search, transcribed step by step (log10 interval arithmetic)."""
    scores = [score_of(c) for c in grid]
    peak = grid[int(np.argmax(scores))]
    c_left, c_right = 1e-1 * peak, 1e1 * peak
    final = None
    for _ in range(steps):
        acc_left, acc_right = score_of(c_left), score_of(c_right)
        if acc_left < acc_right:
            final = c_right
            c_left, c_right = 0.5 * (np.log10(c_right) + np.log10(c_left)), np.log10(c_right)
        else:
            final = c_left
            c_right, c_left = 0.5 * (np.log10(c_right) + np.log10(c_left)), np.log10(c_left)
        c_left, c_right = np.power(10, c_left), np.power(10, c_right)
    return final


@pytest.mark.parametrize("best", [3.7e-3, 0.45, 2e5, 1e6])
def test_search_follows_lpclip(best):
    # A unimodal validation score in log C, quantised like an accuracy, so ties occur too.
    def score_of(c):
        return round(100 - 4 * abs(math.log10(c) - math.log10(best)), 0)

    calls = []

    def fit(c):
        calls.append(c)
        return c

    chosen, model = search_regularisation(fit, score_of, UPSTREAM_C_GRID, steps=8, log=lambda _: None)
    expected = _upstream_search(score_of, list(UPSTREAM_C_GRID), 8)
    assert chosen == pytest.approx(expected, rel=1e-9) and model == chosen
    assert len(calls) == len(set(calls)) <= len(UPSTREAM_C_GRID) + 16  # memoised: no C fitted twice


def test_first_grid_value_wins_a_tie():
    chosen, _ = search_regularisation(lambda c: c, lambda c: 50.0, (1e2, 1.0), steps=0, log=lambda _: None)
    assert chosen == 1e2


# ----------------------------------------------------------------------------- the trainer

@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> str:
    return make_eurosat_tree(tmp_path_factory.mktemp("data"), n_per_class=10)


def run_args(data_root, clip_path, output_dir, subsample, *extra, shots=2):
    return [
        "--root", data_root, "--seed", "1", "--trainer", "LinearProbe", "--output-dir", str(output_dir),
        "--dataset-config-file", osp.join(REPO, "configs/datasets/eurosat.yaml"),
        "--config-file", osp.join(REPO, "configs/trainers/LinearProbe/vit_b16.yaml"),
        *extra,
        "MODEL.BACKBONE.NAME", clip_path, "INPUT.SIZE", "(32, 32)", "DATALOADER.NUM_WORKERS", "0",
        "DATALOADER.TEST.BATCH_SIZE", "4", "DATASET.NUM_SHOTS", str(shots), "DATASET.SUBSAMPLE_CLASSES", subsample,
        "DATASET.CACHE_DIR", str(output_dir) + "_cache", "TRAINER.LINEAR_PROBE.PREC", "fp32",
        "TRAINER.LINEAR_PROBE.C_GRID", "[100.0, 1.0, 0.01]", "TRAINER.LINEAR_PROBE.SEARCH_STEPS", "2",
    ]


@pytest.fixture()
def count_image_encoder(monkeypatch):
    calls = []
    original = ImageEncoder.forward

    def counting(self, image, *args, **kwargs):
        calls.append(len(image))  # a tensor or an ImageBatch
        return original(self, image, *args, **kwargs)

    monkeypatch.setattr(ImageEncoder, "forward", counting)
    return calls


def test_base_to_new_fits_on_base_and_reports_nothing_on_new(data_root, tiny_clip_path, tmp_path, count_image_encoder):
    train_dir, test_dir = tmp_path / "train_base", tmp_path / "test_new"
    train.cli(run_args(data_root, tiny_clip_path, train_dir, "base"))
    log = (train_dir / "log.txt").read_text()
    assert "Finish training" in log and "* accuracy:" in log and "Chosen C" in log
    # 5 base classes: 2 shots and 2 val images each, 3 test images each; every image encoded once.
    assert "10 training and 10 validation features" in log
    assert sorted(count_image_encoder) == sorted([4, 4, 2] + [4, 4, 2] + [4, 4, 4, 3])

    checkpoint = torch.load(train_dir / "linear_probe" / "model.pth.tar-1", map_location="cpu", weights_only=False)
    assert set(checkpoint["state_dict"]) == {"weight", "bias"}  # the head only, never CLIP
    assert checkpoint["state_dict"]["weight"].shape == (5, 32)
    assert len(checkpoint["linear_probe_classnames"]) == 5 and checkpoint["linear_probe_c"] > 0

    train.cli(run_args(data_root, tiny_clip_path, test_dir, "new",
                       "--eval-only", "--model-dir", str(train_dir), "--load-epoch", "1"))
    log = (test_dir / "log.txt").read_text()
    assert "no classifier weights for 5 of the 5 test classes" in log and "=> result" in log
    assert "* accuracy: not available" in log and "%" not in log.split("=> result")[-1]

    from parse_test_res import collect_base2new  # the table shows '-' for the novel half
    root = tmp_path / "b2n"
    for phase, src in (("train_base", train_dir), ("test_new", test_dir)):
        dst = root / phase / "eurosat" / "shots_2" / "LinearProbe" / "vit_b16" / "seed1"
        dst.mkdir(parents=True)
        (dst / "log.txt").write_text((src / "log.txt").read_text())
    results = collect_base2new(str(root))[("LinearProbe", "vit_b16", "shots_2")]["eurosat"]
    assert set(results["base"]) == {"seed1"} and results["new"] == {}


def test_evaluation_reloads_the_fitted_head(data_root, tiny_clip_path, tmp_path):
    train_dir = tmp_path / "fewshot"
    train.cli(run_args(data_root, tiny_clip_path, train_dir, "all"))
    trained = [line for line in (train_dir / "log.txt").read_text().splitlines() if line.startswith("* accuracy")]
    again = tmp_path / "again"
    train.cli(run_args(data_root, tiny_clip_path, again, "all",
                       "--eval-only", "--model-dir", str(train_dir), "--load-epoch", "1"))
    reloaded = [line for line in (again / "log.txt").read_text().splitlines() if line.startswith("* accuracy")]
    assert trained and reloaded == trained[-1:]


@pytest.mark.parametrize("shots, val_shots, n_train, n_val", [(1, 0, 10, 10), (1, -1, 10, 20), (2, 1, 20, 10)])
def test_val_shots_selects_the_validation_images(data_root, tiny_clip_path, tmp_path, shots, val_shots, n_train, n_val):
    # 10 classes with 2 val images each. 0: the protocol's min(K, 4) per class; -1: the whole
    # val split; N: N per class from it, whatever K is.
    out = tmp_path / "run"
    train.cli(run_args(data_root, tiny_clip_path, out, "all", "TRAINER.LINEAR_PROBE.VAL_SHOTS", str(val_shots),
                       shots=shots))
    assert f"{n_train} training and {n_val} validation features" in (out / "log.txt").read_text()


def test_more_than_one_epoch_is_refused(data_root, tiny_clip_path, tmp_path):
    with pytest.raises(ValueError, match="set OPTIM.MAX_EPOCH 1"):
        train.cli(run_args(data_root, tiny_clip_path, tmp_path / "x", "base", "OPTIM.MAX_EPOCH", "5"))


@pytest.mark.parametrize("opts, message", [
    (("TRAINER.LINEAR_PROBE.VAL_SHOTS", "-2"), "VAL_SHOTS=-2: use -1 \\(all\\), 0 \\(the protocol's\\) or N > 0"),
    (("TRAINER.LINEAR_PROBE.C_GRID", "[1.0, 0.0]"), "C_GRID=\\[1.0, 0.0\\]: every C must be > 0"),
])
def test_bad_search_settings_are_refused(data_root, tiny_clip_path, tmp_path, opts, message):
    with pytest.raises(ValueError, match=message):
        train.cli(run_args(data_root, tiny_clip_path, tmp_path / "x", "base") + list(opts))  # overrides last


def test_an_empty_grid_is_refused():
    with pytest.raises(ValueError, match="C_GRID is empty"):
        search_regularisation(lambda c: c, lambda fit: 0.0, grid=())


def test_a_checkpoint_without_class_names_is_refused(data_root, tiny_clip_path, tmp_path):
    out = tmp_path / "fit"
    train.cli(run_args(data_root, tiny_clip_path, out, "base"))
    path = next(out.glob("linear_probe/model.pth.tar-*"))
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    checkpoint.pop("linear_probe_classnames")
    torch.save(checkpoint, path)
    with pytest.raises(ValueError, match="does not record the class names the probe was fit on"):
        train.cli(run_args(data_root, tiny_clip_path, tmp_path / "eval", "base",
                           "--eval-only", "--model-dir", str(out), "--load-epoch", "1"))


def test_predictions_are_the_fitted_linear_map(tiny_clip):
    from trainers.linear_probe import LinearProbeCLIP

    model = LinearProbeCLIP(tiny_clip, 3).eval()
    with torch.no_grad():
        model.head.weight.normal_()
        model.head.bias.normal_()
        image = torch.randn(2, 3, 32, 32)
        expected = tiny_clip.encode_image(image) @ model.head.weight.t() + model.head.bias  # unnormalised features
        assert torch.allclose(model(image), expected, atol=1e-5)
        assert not torch.allclose(model(image), F.normalize(tiny_clip.encode_image(image), dim=-1) @ model.head.weight.t()
                                  + model.head.bias, atol=1e-3)
