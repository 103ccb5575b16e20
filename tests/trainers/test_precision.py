"""Every method under ``PREC`` fp16, amp and bf16, on the CPU through ``MODEL.PREC_ON_CPU``.

The methods are those of ``scripts/<method>/method.sh`` (the runner's list), each with every
``synthetic*.yaml`` config of its folder (SemPT: its three label branches), so a method added
with its scripts and synthetic config is covered without touching this file. Each is built
from that config on a fabricated DTD tree (24 base classes, 2 shots) with a tiny random CLIP (4 image, 3 text
blocks: the synthetic configs' prompt depths), once in fp32 and once per precision with the
same parameters; one evaluation batch and one training step each.

Tolerance: the evaluation is compared on the cosine similarities (logits / logit scale, in
[-1, 1]), as tests/gpu/test_cuda.py does: one rounding costs at most 2^-11 (fp16) or 2^-8
(bf16) relative, which over the tiny towers adds up to about 1e-3 (fp16) and 1e-2 (bf16); we
allow 1e-2 and 4e-2. A dropped factor, a wrong promotion or an fp16 overflow gives 0.1 and more.

The same tests run on a GPU (``-m cuda``, ``bench/gpu.sh``) when one is available.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import List, Tuple

import pytest
import torch

import train
from dassl.engine import TRAINER_REGISTRY, build_trainer
from dassl.utils import set_random_seed
from tests.utils.fabricate import make_dtd_tree
from tests.utils.tiny_clip import make_tiny_clip
from trainers.common.precision import resolve_precision

REPO = Path(__file__).resolve().parents[2]
HALF_PRECISIONS = ("fp16", "amp", "bf16")
TOLERANCE = {"fp16": 1e-2, "amp": 1e-2, "bf16": 4e-2}
AMP_MAX_SKIPPED_STEPS = 8  # the scale may halve from 2^16 down to 2^9 before a step is taken
DEVICES = [
    "cpu",
    pytest.param("cuda", marks=[pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(),
                                                                      reason="CUDA is not available")]),
]


def method_configs() -> List[Tuple[str, Path, bool]]:
    """``(trainer, synthetic config, evaluates only)`` of every scripted method."""
    found = []
    for script in sorted((REPO / "scripts").glob("*/method.sh")):
        text = script.read_text()

        def var(name: str) -> str:
            match = re.search(rf"^{name}=(\S+)", text, re.M)
            return match.group(1) if match else ""

        trainer = var("TRAINER")
        for config in sorted((REPO / "configs" / "trainers" / (var("CFG_DIR") or trainer)).glob("synthetic*.yaml")):
            found.append((trainer, config, var("EVAL_ONLY") == "1"))
    return found


METHODS = method_configs()


def method_id(method) -> str:
    trainer, config, _ = method
    return trainer + config.stem.replace("synthetic", "")


def method(trainer: str, stem: str = "synthetic") -> Tuple[str, Path, bool]:
    return next(m for m in METHODS if m[0] == trainer and m[1].stem == stem)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> str:
    # DTD: ProGrad's template ("a texture of {}.") fits the synthetic configs' 4 context words.
    return make_dtd_tree(tmp_path_factory.mktemp("data"), n_per_class=4)


@pytest.fixture(scope="module")
def clip_path(tmp_path_factory) -> str:
    # 4 image and 3 text blocks: the prompt depths of the synthetic configs.
    return str(make_tiny_clip(tmp_path_factory.mktemp("clip") / "tiny.pt", image_resolution=32,
                              vision_layers=4, text_layers=3))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("runs")


def build(trainer: str, config: Path, prec: str, device: str, data_root: str, clip_path: str, out: Path, *opts):
    train.register_components()
    node = TRAINER_REGISTRY.get(trainer).CFG_NODE
    args = train.build_parser().parse_args([
        "--root", data_root, "--seed", "1", "--trainer", trainer, "--output-dir", str(out),
        "--dataset-config-file", str(REPO / "configs/datasets/dtd.yaml"), "--config-file", str(config),
        "MODEL.BACKBONE.NAME", clip_path, "INPUT.SIZE", "(32, 32)", "OPTIM.MAX_EPOCH", "1",
        "DATALOADER.NUM_WORKERS", "0", "DATALOADER.TRAIN_X.BATCH_SIZE", "4", "DATALOADER.TEST.BATCH_SIZE", "4",
        "DATASET.NUM_SHOTS", "2", "DATASET.SUBSAMPLE_CLASSES", "base", "DATASET.CACHE_DIR", str(out) + "_cache",
        "USE_CUDA", str(device == "cuda"), "MODEL.PREC_ON_CPU", "True", f"TRAINER.{node}.PREC", prec, *opts,
    ])
    set_random_seed(1)
    return build_trainer(train.setup_cfg(args))


def copy_parameters(source, target) -> None:
    """The same learnable state in ``target`` (cast to its dtypes)."""
    for name in source.get_model_names():
        target._models[name].load_state_dict(source._models[name].state_dict())


def evaluation_cosines(trainer, images: torch.Tensor) -> torch.Tensor:
    """The logits over the logit scale (the linear probe, which has none: its logits as they are)."""
    trainer.set_model_mode("eval")
    trainer.before_test()
    try:
        with torch.no_grad():
            logits = trainer.model_inference(images.to(trainer.device))
    finally:
        trainer.after_test()
    scale = getattr(trainer.model, "logit_scale", None)
    return logits.float() if scale is None else logits.float() / scale.exp().float()


def trainable(trainer) -> dict:
    return {k: p for k, p in trainer.model.named_parameters() if p.requires_grad}


_references: dict = {}


def reference(trainer, config, device, data_root, clip_path, workdir):
    """The fp32 trainer of a method, built once per module."""
    key = (trainer, config, device)
    if key not in _references:
        _references[key] = build(trainer, config, "fp32", device, data_root, clip_path,
                                 workdir / f"{trainer}-{config.stem}-{device}-fp32")
    return _references[key]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("prec", HALF_PRECISIONS)
@pytest.mark.parametrize("method", METHODS, ids=method_id)
def test_step_and_evaluation(method, prec, device, data_root, clip_path, workdir, capsys):
    trainer, config, eval_only = method
    ref = reference(trainer, config, device, data_root, clip_path, workdir)
    capsys.readouterr()
    candidate = build(trainer, config, prec, device, data_root, clip_path, workdir / f"{method_id(method)}-{device}-{prec}")
    log = capsys.readouterr().out
    precision = candidate.precision
    assert (precision.name, precision.device_type) == (prec, device)
    if device == "cpu":
        assert f"Precision: {prec} on cpu (MODEL.PREC_ON_CPU: as on a GPU)" in log

    # Parameters: fp16 keeps CLIP's matrices (and what is built from them) in half precision;
    # amp and bf16 keep float32 weights and compute under autocast.
    dtypes = {p.dtype for p in candidate.model.parameters()}
    if prec == "fp16":
        assert torch.float16 in dtypes and torch.bfloat16 not in dtypes, dtypes
    else:
        assert dtypes == {torch.float32}, dtypes

    # Cached image features: computed at the run's precision, in a cache of their own.
    server = getattr(candidate, "feature_server", None)
    if server is not None:
        assert f"-{prec}-" in server.compute_id and server.compute_id != ref.feature_server.compute_id
        images = next(iter(candidate.test_loader))["img"][:2]
        assert server.compute(images).dtype == precision.compute_dtype

    copy_parameters(ref, candidate)
    images = next(iter(ref.test_loader))["img"]
    expected = evaluation_cosines(ref, images)
    # Relative to the largest logit when there is no logit scale (cosines are at most 1).
    error = ((expected - evaluation_cosines(candidate, images)).abs().max() / expected.abs().max().clamp_min(1)).item()
    assert error <= TOLERANCE[prec], f"{method_id(method)} {prec}: max cosine error {error:.4f}"

    if eval_only or not candidate.get_model_names():
        return
    candidate.set_model_mode("train")
    params = trainable(candidate)
    ctx = getattr(getattr(candidate.model, "prompt_learner", None), "ctx", None)
    if isinstance(ctx, torch.nn.Parameter):  # the context is built at the weights' dtype (as upstream);
        # deep prompts and projections stay float32 in every mode, as upstream's MaPLe/IVLP/PromptSRC
        assert ctx.dtype == precision.weight_dtype
    batch = next(iter(candidate.train_loader_x))
    # Under amp the scaler starts at 2^16, where the first scaled gradients overflow fp16:
    # those steps are skipped (nothing moves) and the scale halves, until a step is taken.
    for _ in range(AMP_MAX_SKIPPED_STEPS if prec == "amp" else 1):
        before = {k: p.detach().clone() for k, p in params.items()}
        scale = candidate.scaler.get_scale() if prec == "amp" else None
        summary = candidate.forward_backward(batch)
        assert torch.isfinite(torch.tensor(summary["loss"])), summary
        assert all(torch.isfinite(p).all() for p in params.values())
        moved = any(not torch.equal(p.detach(), before[k]) for k, p in params.items())
        if moved or prec != "amp":
            break
        assert candidate.scaler.get_scale() < scale, "a skipped step did not lower the scale"
    assert moved or (prec == "fp16" and summary["loss"] == 0), "no parameter moved"

    if prec == "amp":  # an inf gradient: the scaler skips the step and lowers its scale
        scale = candidate.scaler.get_scale()
        before = {k: p.detach().clone() for k, p in params.items()}
        first = next(iter(params.values()))
        hook = first.register_hook(lambda grad: torch.full_like(grad, float("inf")))
        try:
            candidate.forward_backward(batch)
        finally:
            hook.remove()
        assert all(torch.equal(p.detach(), before[k]) for k, p in params.items()), "the step was not skipped"
        assert candidate.scaler.get_scale() < scale


def test_cpu_runs_fp32_unless_asked():
    for prec in ("fp16", "amp", "bf16", "fp32"):
        default = resolve_precision(prec, "cpu")
        assert (default.name, default.weight_dtype, default.autocast_dtype) == ("fp32", torch.float32, None)
        assert "MODEL.PREC_ON_CPU True applies it here" in default.describe() or prec == "fp32"
    expected = {"fp16": (torch.float16, None), "amp": (torch.float32, torch.float16),
                "bf16": (torch.float32, torch.bfloat16), "fp32": (torch.float32, None)}
    for prec, dtypes in expected.items():
        on_cpu, on_gpu = resolve_precision(prec, "cpu", on_cpu=True), resolve_precision(prec, "cuda")
        assert (on_cpu.weight_dtype, on_cpu.autocast_dtype) == dtypes == (on_gpu.weight_dtype, on_gpu.autocast_dtype)
        assert on_cpu.name == prec and on_cpu.uses_grad_scaler == (prec == "amp")
    scaler = resolve_precision("amp", "cpu", on_cpu=True).grad_scaler()
    assert isinstance(scaler, torch.amp.GradScaler) and scaler.is_enabled()
    with pytest.raises(ValueError, match="TRAINER.<NAME>.PREC"):
        resolve_precision("half", "cpu", on_cpu=True)


@pytest.mark.parametrize("device", DEVICES)
def test_prograd_projection_sees_unscaled_gradients(device, data_root, clip_path, workdir, monkeypatch):
    """Under amp the gradients reach ProGrad's projection unscaled: the same as fp32's to
    fp16 rounding, not multiplied by the loss scale."""
    import trainers.prograd as prograd

    trainer, config, _ = method("ProGrad")
    seen = []
    original = prograd.project_conflicting_gradient
    monkeypatch.setattr(prograd, "project_conflicting_gradient",
                        lambda g_ce, g_kd, lambda_: seen.append((g_ce.float(), g_kd.float())) or original(g_ce, g_kd, lambda_))
    runs = {}
    for prec in ("fp32", "amp"):
        t = build(trainer, config, prec, device, data_root, clip_path, workdir / f"prograd-unscaled-{device}-{prec}")
        if prec == "amp":
            copy_parameters(runs["fp32"][0], t)
            assert t.scaler.get_scale() > 1000  # a scaled gradient would be off by this factor
        t.set_model_mode("train")
        batch = next(iter(t.train_loader_x))
        for _ in range(AMP_MAX_SKIPPED_STEPS):  # overflowing steps are skipped and change nothing
            seen.clear()
            t.forward_backward(batch)
            if all(torch.isfinite(g).all() for pair in seen for g in pair):
                break
        runs[prec] = (t, list(seen))
    (_, fp32), (_, amp) = runs["fp32"], runs["amp"]
    assert len(fp32) == len(amp) > 0
    for (ce, kd), (ce_amp, kd_amp) in zip(fp32, amp):
        assert torch.isfinite(ce_amp).all() and torch.isfinite(kd_amp).all()
        assert (ce_amp - ce).norm() / ce.norm() < 0.05
        assert (kd_amp - kd).norm() / kd.norm() < 0.05


@pytest.mark.parametrize("device", DEVICES)
def test_tcp_adam_under_fp16_needs_its_epsilon(device, data_root, clip_path, workdir):
    """TCP trains fp16 parameters with Adam: torch's default epsilon (1e-8) is 0 in fp16, so a
    parameter whose gradient is zero divides 0 by 0 (upstream's NaN); TCP's configs set
    OPTIM.ADAM_EPS 1e-3 (docs/upstream-differences.md, "Adam epsilon"), which keeps every step finite."""
    trainer, config, _ = method("TCP")
    results = {}
    for eps in ("1e-3", "1e-8"):
        t = build(trainer, config, "fp16", device, data_root, clip_path, workdir / f"tcp-eps{eps}-{device}",
                  "OPTIM.ADAM_EPS", eps)
        assert t.cfg.OPTIM.NAME == "adam"
        params = trainable(t)
        assert {p.dtype for p in params.values()} == {torch.float16}
        t.set_model_mode("train")
        try:
            for batch, _ in zip(t.train_loader_x, range(2)):
                t.forward_backward(batch)
            results[eps] = all(torch.isfinite(p).all() for p in params.values())
        except FloatingPointError:  # the engine's check: a NaN parameter made the next loss NaN
            results[eps] = False
    assert results["1e-3"], "TCP's fp16 Adam step turned a parameter non-finite"
    assert not results["1e-8"], "Adam with eps 1e-8 stayed finite in fp16: the epsilon's reason is gone"


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("prec", ["fp16", "bf16"])
def test_sempt_fusion_norms_in_half_precision_do_not_overflow(prec, device, data_root, clip_path, workdir):
    """SemPT expands ||t_c + beta a_c||^2 into inner products; in half precision beta^2 ||a||^2
    overflows fp16 (max 65504) at beta = 300. The trainer computes the fusion in float32
    from half-precision features, so it stays finite and equals the plain formula."""
    from trainers.parts.fusion import attribute_logits, naive_attribute_logits

    trainer, config, _ = method("SemPT")
    beta = 300.0
    t = build(trainer, config, prec, device, data_root, clip_path, workdir / f"sempt-fusion-{device}-{prec}",
              "TRAINER.SEMPT.FUSION_WEIGHT", str(beta))
    model = t.model
    images = next(iter(t.test_loader))["img"].to(t.device)
    with torch.no_grad(), t.precision.autocast():
        image_features = model.encode_image(images)
        label_features = model.text_features()
        desc, _ = model.description_features()
    half = torch.float16 if prec == "fp16" else torch.bfloat16
    f, l, e = (x.to(half) for x in (image_features, label_features, desc))
    with torch.no_grad():
        logits = t._attribute_logits(f, l, e, None)
        expected = naive_attribute_logits(f.float(), l.float(), e.float(), model.logit_scale.exp().float(),
                                          t.weight_temperature(), beta, t.method_cfg.WEIGHTING, t.method_cfg.FUSION)
    assert logits.dtype == torch.float32 and torch.isfinite(logits).all()
    torch.testing.assert_close(logits, expected, atol=1e-4, rtol=1e-4)
    if prec == "fp16":  # the same expansion in fp16 overflows: why the trainer upcasts
        with torch.no_grad():
            in_half = attribute_logits(f, l, e, model.logit_scale.exp().to(half), t.weight_temperature(), beta,
                                       t.method_cfg.WEIGHTING, t.method_cfg.FUSION)
        assert not torch.allclose(in_half.float(), expected, atol=1e-1)
