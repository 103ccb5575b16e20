"""The GPU precisions, on a GPU (skipped without CUDA; ``bench/gpu.sh`` runs them).

For every scripted method that trains: one evaluation and one training step under each
``PREC`` (fp16, amp, bf16) on the synthetic world's tiny CLIP, against the same method in
fp32 on the same GPU with the same parameters; then a synthetic base-to-novel pass under amp.

Tolerance: the evaluation is compared on the cosine similarities (logits / logit scale, in
[-1, 1]). One rounding costs at most 2^-11 (fp16) or 2^-8 (bf16) relative; the tiny CLIP
has 7 residual blocks and two LayerNorm-normalised towers, where such errors add up to
about 1e-3 (fp16) and 1e-2 (bf16). We allow 1e-2 and 4e-2: small next to the gap between
a correct and a wrong class (cosines of the trained prompts differ by ~0.05-0.2), large
enough not to flag honest rounding. Any cast that drops a factor, a wrong dtype promotion
or an fp16 overflow shows up as errors of 0.1 and more.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import train
from dassl.engine import TRAINER_REGISTRY, build_trainer
from dassl.utils import set_random_seed

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA is not available on this machine"),
]

REPO = Path(__file__).resolve().parents[2]
TOLERANCE = {"fp16": 1e-2, "amp": 1e-2, "bf16": 4e-2}


def scripted_trainers():
    """(trainer, eval_only) of every ``scripts/<method>/method.sh`` with a synthetic config."""
    found = []
    for path in sorted((REPO / "scripts").glob("*/method.sh")):
        text = path.read_text()
        trainer = re.search(r"^TRAINER=(\S+)", text, re.M).group(1)
        cfg_dir = (re.search(r"^CFG_DIR=(\S+)", text, re.M) or re.search(r"^TRAINER=(\S+)", text, re.M)).group(1)
        if (REPO / "configs" / "trainers" / cfg_dir / "synthetic.yaml").is_file():
            found.append((trainer, cfg_dir, bool(re.search(r"^EVAL_ONLY=1", text, re.M))))
    return found


def build(trainer, cfg_dir, prec, data_root, out):
    train.register_components()
    node = TRAINER_REGISTRY.get(trainer).CFG_NODE
    args = train.build_parser().parse_args([
        "--root", data_root, "--seed", "1", "--trainer", trainer, "--output-dir", str(out),
        "--dataset-config-file", str(REPO / "configs/datasets/synthetic.yaml"),
        "--config-file", str(REPO / "configs/trainers" / cfg_dir / "synthetic.yaml"),
        "DATASET.NUM_SHOTS", "4", "DATASET.SUBSAMPLE_CLASSES", "base", "DATASET.CACHE_DIR", str(out) + "_cache",
        "USE_CUDA", "True", f"TRAINER.{node}.PREC", prec,
    ])
    set_random_seed(1)
    return build_trainer(train.setup_cfg(args))


@pytest.mark.parametrize("prec", ["fp16", "amp", "bf16"])
@pytest.mark.parametrize("trainer,cfg_dir,eval_only", scripted_trainers())
def test_precision_step_and_evaluation(trainer, cfg_dir, eval_only, prec, synthetic_data_root, tmp_path):
    reference = build(trainer, cfg_dir, "fp32", synthetic_data_root, tmp_path / "fp32")
    candidate = build(trainer, cfg_dir, prec, synthetic_data_root, tmp_path / prec)
    assert candidate.device.type == "cuda"
    for name in reference.get_model_names():  # the same parameters, cast to the candidate's dtypes
        candidate._models[name].load_state_dict(reference._models[name].state_dict())

    batch = next(iter(reference.test_loader))
    scale = reference.model.logit_scale.exp().float()
    outputs = []
    for t in (reference, candidate):
        t.set_model_mode("eval")
        t.before_test()
        with torch.no_grad():
            outputs.append(t.model_inference(batch["img"].to(t.device)).float() / scale)
        t.after_test()
    error = (outputs[0] - outputs[1]).abs().max().item()
    assert error <= TOLERANCE[prec], f"{trainer} {prec}: max cosine error {error:.4f}"

    if eval_only or not candidate.get_model_names():
        return
    candidate.set_model_mode("train")
    before = {k: v.detach().clone() for k, v in candidate.model.named_parameters() if v.requires_grad}
    summary = candidate.forward_backward(next(iter(candidate.train_loader_x)))
    assert torch.isfinite(torch.tensor(summary["loss"])), summary
    after = dict(candidate.model.named_parameters())
    assert all(torch.isfinite(after[k]).all() for k in before)
    if prec != "fp16" or summary["loss"] > 0:  # fp16 SGD on a zero loss would not move
        assert any(not torch.equal(after[k].detach(), v) for k, v in before.items()), "no parameter moved"


def accuracies(log: Path):
    text = log.read_text()
    return float(re.findall(r"\* accuracy: ([\d.]+)%", text)[-1])


@pytest.mark.parametrize("method,node", [("coop", "COOP"), ("sempt", "SEMPT")])
def test_synthetic_base_to_novel_under_amp(method, node, synthetic_data_root, tmp_path):
    """Base and novel accuracy under amp within 5 points of fp32 on the same GPU (2 epochs)."""
    results = {}
    for prec in ("fp32", "amp"):
        env = dict(os.environ, DATA=synthetic_data_root, OUTPUT=str(tmp_path / prec), PYTHON=sys.executable,
                   SEMPT_CACHE_DIR=str(tmp_path / "cache"))
        env.pop("CFG", None)
        opts = ["OPTIM.MAX_EPOCH", "2", "USE_CUDA", "True", f"TRAINER.{node}.PREC", prec]
        for part in ("train", "test"):
            run = subprocess.run(["bash", str(REPO / "scripts" / method / f"base2new_{part}.sh"), "synthetic", "1", *opts],
                                 env=env, capture_output=True, text=True, timeout=900)
            assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
        root = tmp_path / prec / "base2new"
        logs = {p: next((root / p).rglob("log.txt")) for p in ("train_base", "test_new")}
        assert "Precision: " + prec + " on cuda" in logs["train_base"].read_text()
        results[prec] = {p: accuracies(log) for p, log in logs.items()}
    for part in ("train_base", "test_new"):
        assert abs(results["amp"][part] - results["fp32"][part]) <= 5.0, results
