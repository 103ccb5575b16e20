"""Evaluators: ``Classification`` prints upstream's ``=> result`` block (upstream Dassl ``dassl/evaluation/evaluator.py``).

Accuracy, error and macro-F1 are printed with two decimals (as the KgCoOp fork does)
so that logs carry the precision papers report. Macro-F1 is computed here (no
scikit-learn): the mean over the labels present in the ground truth of
``2·TP / (2·TP + FP + FN)``, which is what ``f1_score(average="macro",
labels=np.unique(y_true))`` returns.
"""
from __future__ import annotations

import os.path as osp
from collections import OrderedDict, defaultdict
from typing import Dict, List, Optional

import torch

from dassl.utils import Registry, check_availability

__all__ = ["EVALUATOR_REGISTRY", "build_evaluator", "EvaluatorBase", "Classification", "macro_f1_score"]

EVALUATOR_REGISTRY = Registry("EVALUATOR")


def build_evaluator(cfg, **kwargs):
    """Instantiate ``EVALUATOR_REGISTRY[cfg.TEST.EVALUATOR](cfg, **kwargs)``."""
    check_availability(cfg.TEST.EVALUATOR, EVALUATOR_REGISTRY.registered_names())
    if cfg.VERBOSE:
        print(f"Loading evaluator: {cfg.TEST.EVALUATOR}")
    return EVALUATOR_REGISTRY.get(cfg.TEST.EVALUATOR)(cfg, **kwargs)


def macro_f1_score(y_true: torch.Tensor, y_pred: torch.Tensor) -> float:
    """Macro-F1 in [0, 1] over the labels present in ``y_true``."""
    labels = torch.unique(y_true)
    scores = []
    for label in labels:
        t, p = y_true == label, y_pred == label
        tp = (t & p).sum().item()
        fp = (~t & p).sum().item()
        fn = (t & ~p).sum().item()
        scores.append(2 * tp / (2 * tp + fp + fn))  # > 0 denominator: the label occurs in y_true
    return sum(scores) / len(scores)


class EvaluatorBase:
    def __init__(self, cfg) -> None:
        self.cfg = cfg

    def reset(self) -> None:
        raise NotImplementedError

    def process(self, mo: torch.Tensor, gt: torch.Tensor) -> None:
        raise NotImplementedError

    def evaluate(self) -> Dict[str, float]:
        raise NotImplementedError


@EVALUATOR_REGISTRY.register()
class Classification(EvaluatorBase):
    """Accuracy, error rate and macro-F1 of argmax predictions."""

    def __init__(self, cfg, lab2cname: Optional[Dict[int, str]] = None, **kwargs) -> None:
        super().__init__(cfg)
        self._lab2cname = lab2cname
        self._per_class_res: Optional[Dict[int, List[bool]]] = None
        self.reset()

    def reset(self) -> None:
        self._correct = 0
        self._total = 0
        self._y_true: List[torch.Tensor] = []
        self._y_pred: List[torch.Tensor] = []
        if self.cfg.TEST.PER_CLASS_RESULT:
            if self._lab2cname is None:
                raise ValueError("TEST.PER_CLASS_RESULT needs lab2cname for the Classification evaluator")
            self._per_class_res = defaultdict(list)

    def process(self, mo: torch.Tensor, gt: torch.Tensor) -> None:
        """``mo``: (batch, num_classes) outputs; ``gt``: (batch,) labels."""
        pred = mo.max(1)[1]
        matches = pred.eq(gt)
        self._correct += int(matches.sum().item())
        self._total += gt.shape[0]
        self._y_true.append(gt.detach().cpu())
        self._y_pred.append(pred.detach().cpu())
        if self._per_class_res is not None:
            for label, ok in zip(gt.tolist(), matches.tolist()):
                self._per_class_res[label].append(ok)

    def evaluate(self) -> "OrderedDict[str, float]":
        if self._total == 0:
            raise RuntimeError("Classification.evaluate() called before any process()")
        results: "OrderedDict[str, float]" = OrderedDict()
        acc = 100.0 * self._correct / self._total
        err = 100.0 - acc
        y_true, y_pred = torch.cat(self._y_true), torch.cat(self._y_pred)
        macro_f1 = 100.0 * macro_f1_score(y_true, y_pred)
        results["accuracy"] = acc
        results["error_rate"] = err
        results["macro_f1"] = macro_f1
        print(
            "=> result\n"
            f"* total: {self._total:,}\n"
            f"* correct: {self._correct:,}\n"
            f"* accuracy: {acc:.2f}%\n"
            f"* error: {err:.2f}%\n"
            f"* macro_f1: {macro_f1:.2f}%"
        )
        if self._per_class_res is not None:
            accs = []
            print("=> per-class result")
            for label in sorted(self._per_class_res):
                res = self._per_class_res[label]
                correct, total = sum(res), len(res)
                a = 100.0 * correct / total
                accs.append(a)
                print(
                    f"* class: {label} ({self._lab2cname[label]})\t"
                    f"total: {total:,}\tcorrect: {correct:,}\tacc: {a:.1f}%"
                )
            mean_acc = sum(accs) / len(accs)
            print(f"* average: {mean_acc:.1f}%")
            results["perclass_accuracy"] = mean_acc
        if self.cfg.TEST.COMPUTE_CMAT:
            num = int(max(y_true.max().item(), y_pred.max().item())) + 1
            cmat = torch.zeros(num, num)
            cmat.index_put_((y_true, y_pred), torch.ones(len(y_true)), accumulate=True)
            cmat = cmat / cmat.sum(1, keepdim=True).clamp(min=1)  # row-normalised
            save_path = osp.join(self.cfg.OUTPUT_DIR, "cmat.pt")
            torch.save(cmat, save_path)
            print(f"Confusion matrix is saved to {save_path}")
        return results
