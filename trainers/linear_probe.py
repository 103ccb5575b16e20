"""Linear probe CLIP (the CoOp paper's "Linear probe CLIP", KaiyangZhou/CoOp ``lpclip/``).

A multinomial logistic regression on the frozen image features of the few-shot training
images; nothing else trains. As upstream:

- features are the image encoder's output, unnormalised (``lpclip/feat_extractor.py`` keeps
  ``clip_model.visual(image)``), of the images under the *test* transform (no augmentation);
- the objective is scikit-learn's ``LogisticRegression(C, penalty="l2", solver="lbfgs",
  max_iter=1000)`` (``lpclip/linear_probe.py``): ``0.5 ||W||^2 + C sum_i CE(W x_i + b, y_i)``
  with the intercept unpenalised. scikit-learn is not a dependency: the same objective is
  minimised here with torch's L-BFGS in float64, from zero, deterministically;
- ``C`` is searched on the validation split as ``lpclip/linear_probe.py`` does: validation
  accuracy over ``C_GRID``, then ``SEARCH_STEPS`` halvings of a log10 interval around the
  best grid value (``search_regularisation``).

Differences (docs/upstream-differences.md, "LinearProbe"): the few-shot training images are
the protocol's (the same as every other method's for a seed, from the dataset reader),
not a second sample drawn by the probe script; ``VAL_SHOTS`` chooses how many validation
images the search uses (0: the protocol's ``min(K, 4)`` per class, as upstream); the test
set is encoded once, after the search, instead of once per search step.

The fit is one pass, so training is one "epoch" (``OPTIM.MAX_EPOCH 1``). The probe has
weights only for the classes it was fit on: evaluated on other classes (the novel half of
base-to-novel, cross-dataset targets) it says so and reports no accuracy.
"""
from __future__ import annotations

import math
from typing import Callable, Dict, List, Optional, Sequence, Tuple, TypeVar

import torch
import torch.nn.functional as F
from torch import nn

from dassl.config import CfgNode
from dassl.data.data_manager import build_data_loader
from dassl.data.datasets.protocol import subsample_classes
from dassl.engine import TRAINER_REGISTRY
from dassl.utils import read_model_checkpoint

from .common.image_encoder import ImageEncoder
from .common.trainer import PromptTrainer
from .config import register_config

# lpclip/linear_probe.py's first sweep, from weak to strong regularisation.
UPSTREAM_C_GRID = (1e6, 1e4, 1e2, 1.0, 1e-2, 1e-4, 1e-6)
CHECKPOINT_NAME = "linear_probe"  # the registered module (and checkpoint folder)
CLASSNAMES_KEY = "linear_probe_classnames"
C_KEY = "linear_probe_c"


@register_config
def linear_probe_config(cfg) -> None:
    node = CfgNode()
    node.PREC = "fp16"  # of the image encoder on GPU; the regression itself runs in float64
    # Validation images per class for the search of C: 0 = the protocol's few-shot val
    # (min(NUM_SHOTS, 4) per class, as lpclip); N > 0 = N per class from the full val split;
    # -1 = the whole val split.
    node.VAL_SHOTS = 0
    node.C_GRID = list(UPSTREAM_C_GRID)
    node.SEARCH_STEPS = 8  # lpclip's --num_step
    node.MAX_ITER = 1000  # L-BFGS iterations per fit (scikit-learn's max_iter in lpclip)
    cfg.TRAINER.LINEAR_PROBE = node


# ----------------------------------------------------------------------------- the regression

def fit_logistic_regression(
    features: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    c: float,
    max_iter: int = 1000,
    tolerance: float = 1e-6,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(weight (K, D), bias (K,))`` minimising ``0.5 ||W||^2 + c * sum_i CE(W x_i + b, y_i)``.

    scikit-learn's multinomial ``LogisticRegression(C=c)`` objective (intercept not
    penalised), divided by ``c * n`` so that its scale does not depend on ``c`` or ``n``
    (same minimiser). float64, zero start, L-BFGS with a strong-Wolfe line search and
    scipy's default memory of 10: deterministic for a given device. The bias is
    identified up to a constant (softmax); from zero it stays centred.
    """
    if c <= 0:
        raise ValueError(f"the inverse regularisation strength C must be > 0, got {c}")
    x = features.detach().to(torch.float64)
    y = labels.detach().to(x.device, torch.long)
    n, dim = x.shape
    weight = torch.zeros(num_classes, dim, dtype=torch.float64, device=x.device, requires_grad=True)
    bias = torch.zeros(num_classes, dtype=torch.float64, device=x.device, requires_grad=True)
    penalty = 1.0 / (2.0 * c * n)
    optimizer = torch.optim.LBFGS(
        [weight, bias], lr=1.0, max_iter=max_iter, max_eval=max_iter * 5 // 4, history_size=10,
        tolerance_grad=tolerance, tolerance_change=1e-12, line_search_fn="strong_wolfe",
    )

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(x @ weight.t() + bias, y) + penalty * weight.square().sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    return weight.detach(), bias.detach()


def accuracy(weight: torch.Tensor, bias: torch.Tensor, features: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 accuracy (%) of the linear classifier on ``features``."""
    logits = features.to(weight) @ weight.t() + bias
    return 100.0 * (logits.argmax(1) == labels.to(logits.device)).double().mean().item()


Fit = TypeVar("Fit")


def search_regularisation(
    fit: Callable[[float], Fit],
    score: Callable[[Fit], float],
    grid: Sequence[float] = UPSTREAM_C_GRID,
    steps: int = 8,
    log: Callable[[str], None] = print,
) -> Tuple[float, Fit]:
    """``lpclip/linear_probe.py``'s search of ``C``; returns the chosen ``C`` and its fit.

    The grid value of best validation ``score`` (the first on ties) gives the interval
    ``[peak / 10, peak * 10]``; each step fits both ends, keeps the better one (the left
    on ties) as the current choice and halves the interval in log10 towards it. Fits are
    memoised: an end kept from the previous step is not fitted again.
    """
    if not grid:
        raise ValueError("TRAINER.LINEAR_PROBE.C_GRID is empty; give at least one C (upstream: 1e6 ... 1e-6)")
    fits: Dict[float, Tuple[Fit, float]] = {}

    def evaluate(c: float) -> Tuple[Fit, float]:
        if c not in fits:
            model = fit(c)
            fits[c] = (model, score(model))
        return fits[c]

    scores = [evaluate(float(c))[1] for c in grid]
    log("Validation accuracy over C: " + ", ".join(f"{c:g}: {s:.2f}" for c, s in zip(grid, scores)))
    peak = float(grid[max(range(len(scores)), key=lambda i: (scores[i], -i))])
    left, right = peak / 10.0, peak * 10.0
    chosen = peak
    for step in range(steps):
        score_left, score_right = evaluate(left)[1], evaluate(right)[1]
        middle = 10.0 ** (0.5 * (math.log10(left) + math.log10(right)))
        if score_left < score_right:
            chosen, left = right, middle
        else:
            chosen, right = left, middle
        log(f"Search step {step + 1}/{steps}: C {chosen:.4g} (val {max(score_left, score_right):.2f})")
    return chosen, evaluate(chosen)[0]


# ----------------------------------------------------------------------------- the model

class LinearProbeCLIP(nn.Module):
    """CLIP's frozen image encoder and a linear head on its unnormalised features."""

    def __init__(self, clip_model: nn.Module, num_classes: int) -> None:
        super().__init__()
        self.image_encoder = ImageEncoder(clip_model.visual)
        # float32 whatever the encoder's precision: the weights come from a float64 fit.
        self.head = nn.Linear(self.image_encoder.output_dim, num_classes)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def encode_image(self, image: torch.Tensor) -> torch.Tensor:
        """The features the probe reads: the image encoder's output, not normalised (as lpclip)."""
        return self.image_encoder(image)

    def forward(self, image: torch.Tensor, text_features: Optional[torch.Tensor] = None) -> torch.Tensor:
        return self.head(self.encode_image(image).float())


@TRAINER_REGISTRY.register()
class LinearProbe(PromptTrainer):
    """Logistic regression on frozen CLIP image features, ``C`` chosen on the validation split."""

    CFG_NODE = "LINEAR_PROBE"

    def check_cfg(self, cfg) -> None:
        super().check_cfg(cfg)
        if cfg.OPTIM.MAX_EPOCH != 1:
            raise ValueError(
                f"OPTIM.MAX_EPOCH={cfg.OPTIM.MAX_EPOCH}: LinearProbe fits its classifier in one pass "
                "(L-BFGS on the frozen features), so it trains exactly one epoch; set OPTIM.MAX_EPOCH 1"
            )
        node = cfg.TRAINER.LINEAR_PROBE
        if int(node.VAL_SHOTS) < -1:
            raise ValueError(f"TRAINER.LINEAR_PROBE.VAL_SHOTS={node.VAL_SHOTS}: use -1 (all), 0 (the protocol's) or N > 0")
        if any(float(c) <= 0 for c in node.C_GRID):
            raise ValueError(f"TRAINER.LINEAR_PROBE.C_GRID={list(node.C_GRID)}: every C must be > 0")

    def build_custom_model(self, cfg, classnames: Sequence[str], clip_model: nn.Module) -> nn.Module:
        self.unseen_classnames: List[str] = []
        return LinearProbeCLIP(clip_model, len(classnames))

    def trainable_modules(self) -> Dict[str, nn.Module]:
        return {CHECKPOINT_NAME: self.model.head}

    def checkpoint_extras(self) -> Dict[str, object]:
        return {CLASSNAMES_KEY: list(self.dm.dataset.classnames), C_KEY: getattr(self, "chosen_c", None)}

    # -- fitting ----------------------------------------------------------------
    def validation_items(self) -> list:
        """The validation images of the search (see ``VAL_SHOTS``), with this run's labels."""
        shots = int(self.method_cfg.VAL_SHOTS)
        dataset = self.dm.dataset
        if shots == 0:
            items = dataset.val
        else:
            if not hasattr(dataset, "read_splits"):
                raise ValueError(
                    f"TRAINER.LINEAR_PROBE.VAL_SHOTS={shots} needs the full val split, which the "
                    f"{type(dataset).__name__} reader cannot give; set VAL_SHOTS 0 (the protocol's val)"
                )
            train, val, _ = dataset.read_splits()
            # Relabel as the run's own splits were: the label set comes from the train split.
            _, items = subsample_classes(train, val, subsample=self.cfg.DATASET.SUBSAMPLE_CLASSES)
            items = dataset.generate_fewshot_dataset(items, num_shots=shots)
        if not items:
            raise ValueError(f"{self.cfg.DATASET.NAME} has no validation images, which the search of C needs")
        return items

    @torch.no_grad()
    def extract_features(self, items: Sequence) -> Tuple[torch.Tensor, torch.Tensor]:
        """Image features and labels of ``items`` under the test transform (no augmentation)."""
        loader = build_data_loader(
            self.cfg, data_source=items, batch_size=self.cfg.DATALOADER.TEST.BATCH_SIZE,
            tfm=self.dm.tfm_test, is_train=False,
        )
        features, labels = [], []
        for batch in loader:
            image, label = self.parse_batch_test(batch)
            with self.precision.autocast():
                features.append(self.model.encode_image(image).float())
            labels.append(label)
        return torch.cat(features), torch.cat(labels)

    def run_epoch(self) -> None:
        self.set_model_mode("eval")
        node = self.method_cfg
        train_x, train_y = self.extract_features(self.dm.dataset.train_x)
        val_items = self.validation_items()
        val_x, val_y = self.extract_features(val_items)
        print(f"Linear probe: {len(train_y)} training and {len(val_y)} validation features of dim {train_x.shape[1]}")
        num_classes = self.dm.num_classes

        def fit(c: float) -> Tuple[torch.Tensor, torch.Tensor]:
            return fit_logistic_regression(train_x, train_y, num_classes, c, max_iter=int(node.MAX_ITER))

        self.chosen_c, (weight, bias) = search_regularisation(
            fit, lambda wb: accuracy(*wb, val_x, val_y), [float(c) for c in node.C_GRID], int(node.SEARCH_STEPS)
        )
        print(f"Chosen C = {self.chosen_c:.6g} (train accuracy {accuracy(weight, bias, train_x, train_y):.2f})")
        with torch.no_grad():
            self.model.head.weight.copy_(weight)
            self.model.head.bias.copy_(bias)

    # -- evaluation -------------------------------------------------------------
    def compute_eval_text_features(self) -> Optional[torch.Tensor]:
        return None  # no text side

    def load_model(self, directory: str, epoch: Optional[int] = None) -> Dict:
        """Load the head fit on exactly these classes; for any other class set, load nothing and
        remember the classes it never saw (``test`` then reports no accuracy)."""
        path = self.checkpoint_path(directory, CHECKPOINT_NAME, epoch)
        trained = read_model_checkpoint(path).get(CLASSNAMES_KEY)
        if not trained:
            raise ValueError(
                f'"{path}" does not record the class names the probe was fit on ("{CLASSNAMES_KEY}"), so its '
                "rows cannot be matched to this dataset's classes; it was not written by LinearProbe. Retrain it."
            )
        current = list(self.dm.dataset.classnames)
        if current != trained:
            self.unseen_classnames = [c for c in current if c not in trained] or current
            return {}
        return super().load_model(directory, epoch)

    def test(self, split: Optional[str] = None) -> float:
        if not self.unseen_classnames:
            return super().test(split)
        names = self.unseen_classnames
        shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
        print(
            f"LinearProbe has no classifier weights for {len(names)} of the {self.dm.num_classes} test classes "
            f"({shown}): a linear probe only classifies the classes it was fit on (few-shot, or the base "
            "half of base-to-novel), so it reports no accuracy here and tables show '-'.\n"
            "=> result\n"
            "* accuracy: not available (classes never seen by the probe)"
        )
        return float("nan")


__all__ = [
    "LinearProbe",
    "LinearProbeCLIP",
    "UPSTREAM_C_GRID",
    "accuracy",
    "fit_logistic_regression",
    "search_regularisation",
]
