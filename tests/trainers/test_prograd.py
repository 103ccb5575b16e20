"""ProGrad against an independent re-implementation of upstream's code, on a tiny random CLIP.

The reference below follows BeierZhu/Prompt-align ``ProGrad.public/trainers/prograd.py`` and
``Dassl.ProGrad.pytorch/dassl/engine/trainer.py`` (``prograd_backward_and_update``) step by
step, with their fp16 casts removed: a CLIP built from the same checkpoint, upstream's prompt
init, full 77-token prompts through CLIP's own transformer, a zero-shot CLIP encoding the
batch again as the teacher, the two backward passes (KD first, then CE) and upstream's
normalise-then-project rule. Every comparison is within 1e-5.
"""
from __future__ import annotations

import os.path as osp
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

import train
from dassl.config import ConfigError
from dassl.engine import build_trainer
from dassl.utils import set_random_seed
from tests.utils.fabricate import make_eurosat_tree, make_oxford_pets_tree
from trainers.common import model as model_module
from trainers.common import trainer as trainer_module
from trainers.common.precision import Precision
from trainers.common.openai_clip import clip
from trainers.prograd import (
    PROGRAD_TEMPLATES,
    ProGradPromptLearner,
    project_conflicting_gradient,
    template_words,
)

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
ATOL = 1e-5


# ------------------------------------------------------------------ upstream, re-implemented
# CUSTOM_TEMPLATES of ProGrad.public/trainers/prograd.py, as published.
UPSTREAM_TEMPLATES = {
    "OxfordPets": "a type of pet, a photo of a {}.",
    "OxfordFlowers": "a type of flower, a photo of a {}.",
    "FGVCAircraft": "a type of aircraft, a photo of a {}.",
    "DescribableTextures": "a texture of {}.",
    "EuroSAT": "a centered satellite photo of {}.",
    "StanfordCars": "a photo of a {}.",
    "Food101": "a type of food, a photo of {}.",
    "SUN397": "a photo of a {}.",
    "Caltech101": "a photo of a {}.",
    "UCF101": "a photo of a person doing {}.",
    "ImageNet": "a photo of a {}.",
    "ImageNetSketch": "a photo of a {}.",
    "ImageNetV2": "a photo of a {}.",
    "ImageNetA": "a photo of a {}.",
    "ImageNetR": "a photo of a {}.",
}


def upstream_clip(clip_path: str):
    """``load_clip_to_cpu`` + ``clip_model.float()`` of upstream, from the same checkpoint."""
    return clip.model.build_model(torch.load(clip_path, map_location="cpu")).float().eval()


def upstream_ctx_init(clip_model, n_ctx: int, template: str):
    """Upstream ``PromptLearner.__init__`` with ``CTX_INIT`` True: the context vectors and prefix."""
    ctx_init = template.replace(" {}.", "").replace("_", " ")
    prompt_n_ctx = len(ctx_init.split(" "))
    embedding = clip_model.token_embedding(clip.tokenize(ctx_init))
    ctx_vectors = torch.zeros(n_ctx, embedding.shape[-1])
    ctx_vectors[n_ctx - prompt_n_ctx:, :] = embedding[0, 1:1 + prompt_n_ctx, :]
    prompt_prefix = " ".join(["X"] * (n_ctx - prompt_n_ctx))
    return ctx_vectors, f"{prompt_prefix} {ctx_init}"


def upstream_prompts(clip_model, classnames, prompt_prefix: str, ctx: torch.Tensor, n_ctx: int):
    """Upstream ``PromptLearner.forward`` (class token at the end) and its tokenized prompts (77)."""
    names = [name.replace("_", " ") for name in classnames]
    tokenized = torch.cat([clip.tokenize(prompt_prefix + " " + name + ".") for name in names])
    with torch.no_grad():
        embedding = clip_model.token_embedding(tokenized)
    if ctx.dim() == 2:
        ctx = ctx.unsqueeze(0).expand(len(names), -1, -1)
    prompts = torch.cat([embedding[:, :1, :], ctx, embedding[:, 1 + n_ctx:, :]], dim=1)
    return prompts, tokenized


def upstream_text_encoder(clip_model, prompts, tokenized):
    """Upstream ``TextEncoder.forward``: all 77 positions through CLIP's transformer."""
    x = prompts + clip_model.positional_embedding
    x = clip_model.transformer(x.permute(1, 0, 2)).permute(1, 0, 2)
    x = clip_model.ln_final(x)
    return x[torch.arange(x.shape[0]), tokenized.argmax(dim=-1)] @ clip_model.text_projection


def upstream_step(clip_model, classnames, template, prompt_prefix, ctx, n_ctx, images, labels, T, lambda_):
    """Upstream's ``forward_backward`` + ``prograd_backward_and_update`` up to the optimizer
    step: student logits, the losses, ``g_kd``, ``g_ce`` and the gradient it steps with."""
    ctx = torch.nn.Parameter(ctx.detach().clone())
    # CustomCLIP.forward
    image_features = clip_model.visual(images)
    prompts, tokenized = upstream_prompts(clip_model, classnames, prompt_prefix, ctx, n_ctx)
    text_features = upstream_text_encoder(clip_model, prompts, tokenized)
    image_features = image_features / image_features.norm(dim=-1, keepdim=True)
    text_features = text_features / text_features.norm(dim=-1, keepdim=True)
    output = clip_model.logit_scale.exp() * image_features @ text_features.t()
    # the zero-shot CLIP teacher: its own encode_text / encode_image
    with torch.no_grad():
        zs_text = clip_model.encode_text(
            torch.cat([clip.tokenize(template.format(c.replace("_", " "))) for c in classnames]))
        zs_text = zs_text / zs_text.norm(dim=-1, keepdim=True)
        zs_image = clip_model.encode_image(images)
        zs_image = zs_image / zs_image.norm(dim=-1, keepdim=True)
        zs_output = clip_model.logit_scale.exp() * zs_image @ zs_text.t()
    # ProGradLoss
    xe_loss = F.cross_entropy(output, labels)
    tea_prob = F.softmax(zs_output / T, dim=-1)
    kl_loss = (-tea_prob * F.log_softmax(output / T, -1) * T * T).sum(1).mean()
    # prograd_backward_and_update
    kl_loss.backward(retain_graph=True)
    b_grad = ctx.grad.clone()
    ctx.grad = None
    xe_loss.backward()
    a_grad = ctx.grad.clone()
    b_grad_norm = b_grad / torch.linalg.norm(b_grad)
    a_grad_norm = a_grad / torch.linalg.norm(a_grad)
    conflict = bool(torch.dot(a_grad_norm.flatten(), b_grad_norm.flatten()) < 0)
    grad = a_grad - lambda_ * torch.dot(a_grad.flatten(), b_grad_norm.flatten()) * b_grad_norm if conflict else a_grad
    return SimpleNamespace(logits=output.detach(), xe_loss=xe_loss.item(), kl_loss=kl_loss.item(),
                           g_kd=b_grad, g_ce=a_grad, grad=grad, conflict=conflict)


# ------------------------------------------------------------------ our trainer
@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> str:
    root = tmp_path_factory.mktemp("data")
    make_eurosat_tree(root, n_per_class=6)
    make_oxford_pets_tree(root, n_per_class=4)
    return str(root)


def build(data_root, clip_path, out, dataset="eurosat", *opts, config="ProGrad/vit_b16_ep100"):
    argv = [
        "--root", data_root, "--seed", "1", "--trainer", "ProGrad", "--output-dir", str(out),
        "--dataset-config-file", osp.join(REPO, f"configs/datasets/{dataset}.yaml"),
        "--config-file", config if osp.isabs(config) else osp.join(REPO, f"configs/trainers/{config}.yaml"),
        "MODEL.BACKBONE.NAME", clip_path, "INPUT.SIZE", "(32, 32)", "OPTIM.MAX_EPOCH", "2",
        "DATALOADER.NUM_WORKERS", "0", "DATALOADER.TRAIN_X.BATCH_SIZE", "4", "DATALOADER.TEST.BATCH_SIZE", "4",
        "DATASET.NUM_SHOTS", "2", "DATASET.SUBSAMPLE_CLASSES", "base", "DATASET.CACHE_DIR", str(out) + "_cache",
        "TRAINER.PROGRAD.PREC", "fp32", *opts,
    ]
    train.register_components()
    cfg = train.setup_cfg(train.build_parser().parse_args(argv))
    set_random_seed(cfg.SEED)
    return build_trainer(cfg)


def random_batch(trainer, seed: int, n: int = 6):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 32, 32, generator=g), torch.randint(trainer.num_classes, (n,), generator=g)


def batch_with(trainer, step, conflict: bool):
    """The first random batch on which ``step(images, labels)`` (the reference) takes the wanted
    branch of the rule: CE and KD gradients in conflict (projected) or not (kept)."""
    for seed in range(50):
        images, labels = random_batch(trainer, seed)
        ref = step(images, labels)
        if ref.conflict == conflict:
            return images, labels, ref
    raise AssertionError(f"no batch with conflict={conflict} among 50")


CASES = {
    # upstream's configs: template init ("a centered satellite photo of": 11 zeros + 5 words)
    "eurosat-template": ("eurosat", ()),
    # "a type of pet, a photo of a": 8 words, 9 BPE tokens; the last "a" stays frozen text
    "pets-template-comma": ("oxford_pets", ()),
    # random class-specific context, upstream spellings for lambda and T
    "eurosat-random-csc": ("eurosat", ("TRAINER.PROGRAD.CTX_INIT", "False", "TRAINER.COOP.CSC", "True",
                                       "LOSS.LAMBDA", "0.5", "LOSS.T", "2.0", "LOSS.NAME", "prograd")),
}


@pytest.mark.parametrize("conflict", [True, False], ids=["conflict", "agree"])
@pytest.mark.parametrize("case", list(CASES))
def test_matches_upstream(case, conflict, data_root, tiny_clip_path, tmp_path):
    dataset, opts = CASES[case]
    trainer = build(data_root, tiny_clip_path, tmp_path, dataset, *opts)
    learner, s = trainer.model.prompt_learner, trainer.method_cfg
    classnames = trainer.dm.dataset.classnames
    template = UPSTREAM_TEMPLATES[trainer.cfg.DATASET.NAME]
    reference_clip = upstream_clip(tiny_clip_path)

    if s.CTX_INIT is True:  # the init itself, exactly upstream's
        ref_ctx, ref_prefix = upstream_ctx_init(reference_clip, 16, template)
        assert learner.prompt_prefix.strip() == ref_prefix.strip()
        assert torch.equal(learner.ctx.detach(), ref_ctx)
    else:
        assert learner.ctx.shape == (len(classnames), 16, 64)  # CSC from TRAINER.COOP.CSC
        ref_prefix = " ".join(["X"] * 16)
    images, labels, ref = batch_with(trainer, lambda images, labels: upstream_step(
        reference_clip, classnames, template, ref_prefix, learner.ctx, 16, images, labels, s.T, s.LAMBDA), conflict)

    trainer.set_model_mode("eval")
    trainer.before_test()
    assert torch.allclose(trainer.model_inference(images), ref.logits, atol=ATOL)
    trainer.after_test()

    trainer.set_model_mode("train")
    summary = trainer.forward_backward({"img": images, "label": labels})
    assert list(summary) == ["loss", "loss_kd", "acc"]
    assert summary["loss"] == pytest.approx(ref.xe_loss, abs=ATOL)  # the objective is CE alone
    assert summary["loss_kd"] == pytest.approx(ref.kl_loss, abs=ATOL)
    assert torch.allclose(learner.ctx.grad, ref.grad, atol=ATOL, rtol=1e-4)
    assert ref.grad.abs().max() > 100 * ATOL  # the comparison is not trivially small
    if conflict:
        assert not torch.allclose(ref.grad, ref.g_ce, atol=ATOL)  # the projection changed it


def test_templates_are_upstreams():
    assert {name: PROGRAD_TEMPLATES[name] for name in UPSTREAM_TEMPLATES} == UPSTREAM_TEMPLATES


def test_template_init_keeps_a_comma_token_frozen(tiny_clip):
    words = template_words(PROGRAD_TEMPLATES["OxfordPets"])
    assert words == "a type of pet, a photo of a"
    learner = ProGradPromptLearner(["beagle", "pug"], tiny_clip, n_ctx=10, ctx_init=words, right_align=True,
                                   verbose=False)
    ref_ctx, ref_prefix = upstream_ctx_init(tiny_clip, 10, UPSTREAM_TEMPLATES["OxfordPets"])
    assert torch.equal(learner.ctx.detach(), ref_ctx) and learner.ctx[:2].abs().sum() == 0
    prompts, tokenized = upstream_prompts(tiny_clip, ["beagle", "pug"], ref_prefix, learner.ctx, 10)
    ours = learner()
    assert torch.equal(ours, prompts[:, :ours.shape[1]])
    # Context positions 1-10 stand for "X X a type of pet , a photo of"; the last "a" of the
    # template is the first frozen token after them.
    a_token = tiny_clip.token_embedding(clip.tokenize("a"))[0, 1]
    assert torch.equal(learner.token_suffix[0, 0], a_token)


def test_template_init_refuses_too_few_context_vectors(tiny_clip):
    with pytest.raises(ValueError, match="set TRAINER.PROGRAD.N_CTX to at least 8"):
        ProGradPromptLearner(["pug"], tiny_clip, n_ctx=4, ctx_init="a type of pet, a photo of a",
                             right_align=True, verbose=False)


# ------------------------------------------------------------------ the projection rule
def test_projection_removes_the_conflicting_component_only():
    g_ce = torch.tensor([[1.0, 1.0], [0.0, 0.0]])
    g_kd = torch.tensor([[-2.0, 0.0], [0.0, 0.0]])
    assert torch.equal(project_conflicting_gradient(g_ce, g_kd, 1.0), torch.tensor([[0.0, 1.0], [0.0, 0.0]]))
    assert torch.equal(project_conflicting_gradient(g_ce, g_kd, 0.5), torch.tensor([[0.5, 1.0], [0.0, 0.0]]))
    assert torch.equal(project_conflicting_gradient(g_ce, -g_kd, 1.0), g_ce)  # no conflict: unchanged


def test_projection_with_a_zero_or_non_finite_gradient_keeps_ce():
    g = torch.tensor([1.0, -2.0, 3.0])
    zero = torch.zeros(3)
    assert torch.equal(project_conflicting_gradient(g, zero, 1.0), g)
    assert torch.equal(project_conflicting_gradient(zero, g, 1.0), zero)
    inf = torch.tensor([float("inf"), 0.0, 0.0])
    assert torch.equal(project_conflicting_gradient(g, inf, 1.0), g)
    out = project_conflicting_gradient(inf, -g, 1.0)  # overflowed CE: left for the grad scaler
    assert torch.equal(out, inf)


def test_projection_of_fp16_gradients_is_computed_in_fp32():
    g_ce = torch.full((16, 64), 3e-4, dtype=torch.float16)
    g_kd = -torch.full((16, 64), 2e-4, dtype=torch.float16)
    g_kd[0, 0] = 1e-3
    out = project_conflicting_gradient(g_ce, g_kd, 1.0)
    expected = project_conflicting_gradient(g_ce.float(), g_kd.float(), 1.0)
    assert out.dtype == torch.float16 and torch.isfinite(out).all()
    assert torch.allclose(out.float(), expected, atol=1e-6)


# ------------------------------------------------------------------ amp, memory, checkpoints
def test_distillation_gradient_is_unscaled_under_a_grad_scaler(data_root, tiny_clip_path, tmp_path):
    """amp on GPU scales the loss; the KD gradient is taken scaled, then unscaled (here the
    CPU grad scaler stands in for the CUDA one)."""
    plain = build(data_root, tiny_clip_path, tmp_path / "plain")
    scaled = build(data_root, tiny_clip_path, tmp_path / "scaled")
    scaled.scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 12)
    images, labels = random_batch(plain, 0)
    seen = {}
    for name, t in (("plain", plain), ("scaled", scaled)):
        original = t.distillation_gradients
        t.distillation_gradients = lambda loss, original=original, name=name: seen.setdefault(name, original(loss))
        t.forward_backward({"img": images, "label": labels})
    ctx_plain, ctx_scaled = plain.model.prompt_learner.ctx, scaled.model.prompt_learner.ctx
    assert torch.allclose(seen["scaled"][ctx_scaled], seen["plain"][ctx_plain], atol=1e-7, rtol=1e-5)
    assert torch.allclose(ctx_scaled.grad, ctx_plain.grad, atol=1e-7, rtol=1e-5)
    assert torch.allclose(ctx_scaled, ctx_plain, atol=1e-7)  # the same step was taken


EMULATED = {  # the GPU precisions, emulated on the CPU: (weights, autocast dtype, bound on the gradient's error)
    "fp16": (torch.float16, None, 0.02),
    "amp": (torch.float32, torch.float16, 0.02),
    "bf16": (torch.float32, torch.bfloat16, 0.15),
}


@pytest.mark.parametrize("mode", list(EMULATED))
def test_every_precision_takes_the_step(mode, data_root, tiny_clip_path, tmp_path, monkeypatch):
    """No GPU here: the CPU runs each PREC's dtypes (fp16 weights, or fp32 weights under
    autocast with amp's grad scaler) and the projected gradient stays close to fp32's."""
    reference = build(data_root, tiny_clip_path, tmp_path / "fp32")
    weights, autocast, bound = EMULATED[mode]
    monkeypatch.setattr(trainer_module, "resolve_precision",
                        lambda prec, device, on_cpu=False: Precision(mode, mode, "cpu", weights, autocast))
    trainer = build(data_root, tiny_clip_path, tmp_path / mode)
    if mode == "amp":  # the default scale (2**16) overflows fp16 on the first steps, which are skipped
        assert trainer.scaler is not None
        trainer.scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 4)
    ctx = trainer.model.prompt_learner.ctx
    assert ctx.dtype == weights
    images, labels = random_batch(trainer, 0)
    expected_summary = reference.forward_backward({"img": images, "label": labels})
    summary = trainer.forward_backward({"img": images, "label": labels})
    expected = reference.model.prompt_learner.ctx.grad
    assert ctx.grad.dtype == weights and torch.isfinite(ctx.grad).all() and torch.isfinite(ctx).all()
    assert (ctx.grad.float() - expected).norm() / expected.norm() < bound
    assert summary["loss"] == pytest.approx(expected_summary["loss"], rel=0.02)
    assert summary["loss_kd"] == pytest.approx(expected_summary["loss_kd"], rel=0.02)


def test_an_overflowing_scaled_step_is_skipped_and_nothing_turns_nan(data_root, tiny_clip_path, tmp_path):
    trainer = build(data_root, tiny_clip_path, tmp_path)
    trainer.scaler = torch.amp.GradScaler("cpu", init_scale=3e38)
    ctx = trainer.model.prompt_learner.ctx
    before = ctx.detach().clone()
    images, labels = random_batch(trainer, 0)
    trainer.forward_backward({"img": images, "label": labels})
    assert torch.equal(ctx.detach(), before)
    assert trainer.scaler.get_scale() < 3e38


def test_activation_checkpointing_gives_the_same_loss_and_gradient(data_root, tiny_clip_path, tmp_path, monkeypatch):
    monkeypatch.setattr(model_module, "CHECKPOINT_CHUNK_SIZE", 2)  # 5 classes -> 3 checkpointed chunks
    plain = build(data_root, tiny_clip_path, tmp_path / "plain")
    checkpointed = build(data_root, tiny_clip_path, tmp_path / "ckpt", "eurosat", "MODEL.ACT_CHECKPOINT", "True")
    assert checkpointed.model.activation_checkpointing and not plain.model.activation_checkpointing
    images, labels = random_batch(plain, 0)
    a = plain.forward_backward({"img": images, "label": labels})
    b = checkpointed.forward_backward({"img": images, "label": labels})
    assert a["loss"] == pytest.approx(b["loss"], abs=1e-6) and a["loss_kd"] == pytest.approx(b["loss_kd"], abs=1e-6)
    assert torch.allclose(plain.model.prompt_learner.ctx.grad, checkpointed.model.prompt_learner.ctx.grad, atol=ATOL)


def test_upstream_checkpoint_loads(data_root, tiny_clip_path, tmp_path):
    """A model-zoo file as upstream saves it: the prompt learner's state dict (fp16 ctx and the
    class-dependent token buffers of full 77-token prompts) under prompt_learner/."""
    trainer = build(data_root, tiny_clip_path, tmp_path / "ours")
    ctx = torch.randn(16, 64).half()
    state = {"ctx": ctx, "token_prefix": torch.randn(10, 1, 64).half(), "token_suffix": torch.randn(10, 60, 64).half()}
    folder = tmp_path / "zoo" / "prompt_learner"
    folder.mkdir(parents=True)
    torch.save({"state_dict": state, "epoch": 50, "optimizer": None, "scheduler": None}, folder / "model.pth.tar-50")
    trainer.load_model(str(tmp_path / "zoo"), epoch=50)
    assert torch.equal(trainer.model.prompt_learner.ctx.detach(), ctx.float())


def test_train_base_then_evaluate_new(data_root, tiny_clip_path, tmp_path):
    common = ["--root", data_root, "--seed", "1", "--trainer", "ProGrad",
              "--dataset-config-file", osp.join(REPO, "configs/datasets/eurosat.yaml"),
              "--config-file", osp.join(REPO, "configs/trainers/ProGrad/rn50_ep50.yaml")]
    opts = ["MODEL.BACKBONE.NAME", tiny_clip_path, "INPUT.SIZE", "(32, 32)", "OPTIM.MAX_EPOCH", "2",
            "DATALOADER.NUM_WORKERS", "0", "DATALOADER.TRAIN_X.BATCH_SIZE", "4", "DATALOADER.TEST.BATCH_SIZE", "4",
            "DATASET.NUM_SHOTS", "2", "DATASET.CACHE_DIR", str(tmp_path / "cache"), "TRAINER.COOP.PREC", "fp32"]
    train.cli(common + ["--output-dir", str(tmp_path / "base")] + opts + ["DATASET.SUBSAMPLE_CLASSES", "base"])
    checkpoint = tmp_path / "base" / "prompt_learner" / "model.pth.tar-2"
    saved = torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    assert set(saved) == {"ctx"}  # only what trains
    log = (tmp_path / "base" / "log.txt").read_text()
    assert "PREC = 'fp32' (TRAINER.COOP.PREC)" in log and "loss_kd" in log
    train.cli(common + ["--output-dir", str(tmp_path / "new"), "--eval-only", "--model-dir", str(tmp_path / "base"),
                        "--load-epoch", "2"] + opts + ["DATASET.SUBSAMPLE_CLASSES", "new"])
    log = (tmp_path / "new" / "log.txt").read_text()
    assert f'Loading weights to prompt_learner from "{checkpoint}"' in log and "* total: 10" in log


# ------------------------------------------------------------------ config spellings
UPSTREAM_STYLE_YAML = """
OPTIM:
  NAME: "sgd"
LOSS:
  NAME: "prograd"
  T: 1.0
TRAINER:
  PROGRAD:
    CTX_INIT: {ctx_init}
"""


@pytest.mark.parametrize("ctx_init, prefix", [
    ("True", " ".join(["X"] * 11) + " a centered satellite photo of"),
    ("False", " ".join(["X"] * 16)),
    ('"a photo of a"', "a photo of a"),
])
def test_ctx_init_in_a_yaml(ctx_init, prefix, data_root, tiny_clip_path, tmp_path):
    config = tmp_path / "prograd.yaml"
    config.write_text(UPSTREAM_STYLE_YAML.format(ctx_init=ctx_init))
    trainer = build(data_root, tiny_clip_path, tmp_path, "eurosat", config=str(config))
    assert trainer.model.prompt_learner.prompt_prefix == prefix


def test_ctx_init_accepts_upstream_bools_and_coop_words(data_root, tiny_clip_path, tmp_path):
    words = build(data_root, tiny_clip_path, tmp_path / "w", "eurosat", "TRAINER.PROGRAD.CTX_INIT", "a photo of a")
    assert words.model.prompt_learner.n_ctx == 4  # CoOp's meaning: the words' BPE count
    random = build(data_root, tiny_clip_path, tmp_path / "r", "eurosat", "TRAINER.PROGRAD.CTX_INIT", "False")
    assert random.model.prompt_learner.prompt_prefix == " ".join(["X"] * 16)
    for opts in ((), ("TRAINER.PROGRAD.CTX_INIT", "True")):  # unset means True, as upstream's configs
        template = build(data_root, tiny_clip_path, tmp_path / "t", "eurosat", *opts)
        assert template.model.prompt_learner.prompt_prefix == " ".join(["X"] * 11) + " a centered satellite photo of"


def test_upstream_spellings_override_the_node(data_root, tiny_clip_path, tmp_path):
    trainer = build(data_root, tiny_clip_path, tmp_path, "eurosat", "TRAINER.COOP.N_CTX", "8",
                    "TRAINER.COOP.CLASS_TOKEN_POSITION", "middle", "LOSS.LAMBDA", "0.8", "LOSS.T", "2.0")
    s = trainer.method_cfg
    assert (s.N_CTX, s.CLASS_TOKEN_POSITION, s.LAMBDA, s.T) == (8, "middle", 0.8, 2.0)
    assert trainer.setting_sources["LAMBDA"] == "LOSS.LAMBDA"
    assert trainer.model.prompt_learner.n_ctx == 8


@pytest.mark.parametrize("opts, message", [
    (("LOSS.NAME", "kd"), 'LOSS.NAME="kd"'),
    (("TRAINER.COOP.PREC", "fp64"), "TRAINER.COOP.PREC='fp64'"),
    (("LOSS.T", "0.0"), "LOSS.T=0.0"),
    (("LOSS.LAMBDA", "high"), "LOSS.LAMBDA='high'"),
    (("TRAINER.PROGRAD.CTX_INIT", "3"), "TRAINER.PROGRAD.CTX_INIT=3"),
])
def test_bad_values_name_the_key(opts, message, data_root, tiny_clip_path, tmp_path):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(".", r"\.")):
        build(data_root, tiny_clip_path, tmp_path, "eurosat", *opts)


def test_a_typed_node_key_still_refuses_the_wrong_type(data_root, tiny_clip_path, tmp_path):
    with pytest.raises(ConfigError, match="TRAINER.PROGRAD.LAMBDA"):
        build(data_root, tiny_clip_path, tmp_path, "eurosat", "TRAINER.PROGRAD.LAMBDA", "1")
