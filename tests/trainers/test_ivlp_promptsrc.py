"""IVLP and PromptSRC against independent references of the upstream code (tests/trainers/
ivlp_reference.py): eval logits, the training loss and every prompt's gradient (fp32, tiny
CLIP); Gaussian prompt aggregation and its exact resume; upstream model-zoo checkpoints;
activation checkpointing on 1000 classes; fp16 / amp by construction; errors."""
from __future__ import annotations

import os.path as osp

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import train
from dassl.engine import build_trainer
from dassl.utils import set_random_seed
from tests.trainers.ivlp_reference import (
    upstream_logits,
    upstream_promptsrc_losses,
    upstream_teacher_text,
)
from tests.utils.fabricate import make_eurosat_tree
from tests.utils.tiny_clip import make_tiny_clip
from trainers.common.clip_loader import load_clip
from trainers.common.model import PromptCLIP
from trainers.common.openai_clip import clip
from trainers.common.precision import Precision
from trainers.common.prompt_learner import bpe_length
from trainers.common.templates import IMAGENET_TEMPLATES
from trainers.parts.vl_prompts import CHECKPOINT_NAME, VLPromptLearner
from trainers.common.model import PromptCLIP
from trainers.parts.self_regulation import gpa_epoch_weights

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIGS = {"IVLP": "IVLP/vit_b16_c2_ep5_batch4_2+2ctx", "PromptSRC": "PromptSRC/vit_b16_c2_ep20_batch4_4+4ctx"}
NODES = {"IVLP": "IVLP", "PromptSRC": "PROMPTSRC"}
TOL = 1e-5


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> str:
    return make_eurosat_tree(tmp_path_factory.mktemp("data"), n_per_class=6)


@pytest.fixture(scope="module")
def clip_path(tmp_path_factory) -> str:
    """Three blocks in each tower: room for full, partial and no deep prompting."""
    return str(make_tiny_clip(tmp_path_factory.mktemp("clip") / "tiny3.pt", vision_layers=3, text_layers=3))


def vl_opts(trainer: str, n_text: int, n_vision: int, depth_text: int, depth_vision: int, *more: str):
    node = f"TRAINER.{NODES[trainer]}"
    return (f"{node}.N_CTX_TEXT", str(n_text), f"{node}.N_CTX_VISION", str(n_vision),
            f"{node}.PROMPT_DEPTH_TEXT", str(depth_text), f"{node}.PROMPT_DEPTH_VISION", str(depth_vision), *more)


def cli_args(trainer, data_root, clip_path, out, *opts, flags=()):
    """The shipped config of ``trainer``, shrunk to the tiny CLIP, 2 shots of the 5 base classes."""
    return [*flags,
        "--root", data_root, "--seed", "1", "--trainer", trainer, "--output-dir", str(out),
        "--dataset-config-file", osp.join(REPO, "configs/datasets/eurosat.yaml"),
        "--config-file", osp.join(REPO, "configs/trainers", CONFIGS[trainer] + ".yaml"),
        "MODEL.BACKBONE.NAME", clip_path, "INPUT.SIZE", "(32, 32)", "DATALOADER.NUM_WORKERS", "0",
        "DATALOADER.TEST.BATCH_SIZE", "10", "DATASET.NUM_SHOTS", "2", "DATASET.SUBSAMPLE_CLASSES", "base",
        "DATASET.CACHE_DIR", str(out) + "_cache", f"TRAINER.{NODES[trainer]}.PREC", "fp32", *opts,
    ]


def build(trainer, data_root, clip_path, out, *opts):
    parsed = train.build_parser().parse_args(cli_args(trainer, data_root, clip_path, out, *opts))
    train.register_components()
    cfg = train.setup_cfg(parsed)
    set_random_seed(cfg.SEED)
    return build_trainer(cfg)


def randomise_prompts(trainer, seed: int = 0):
    """Move every prompt away from its init (so each one matters) and return a copy of them."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in trainer.model.prompt_learner.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.1)
    return {k: v.detach().clone() for k, v in trainer.model.prompt_learner.state_dict().items()}


def a_batch(n_cls: int, seed: int = 0, size: int = 4):
    g = torch.Generator().manual_seed(seed)
    return {"img": torch.randn(size, 3, 32, 32, generator=g), "label": torch.randint(0, n_cls, (size,), generator=g)}


def upstream_prefix(ctx_init: str, n_ctx: int) -> str:
    """independentVL.py: CTX_INIT is the prompt text only when n_ctx <= 4; else "X X ..."."""
    return ctx_init if ctx_init and n_ctx <= 4 else " ".join(["X"] * n_ctx)


def assert_close(ours: torch.Tensor, ref: torch.Tensor, what: str) -> None:
    diff = (ours.detach().float() - ref.detach().float()).abs().max().item()
    assert diff <= TOL, f"{what}: max |diff| {diff:.3g}"


def check_against_upstream(trainer, clip_path, depth_text, depth_vision, ctx_init, reference_losses):
    """The three equivalences: eval logits, the training loss(es) and every prompt's gradient."""
    learner = trainer.model.prompt_learner
    classnames = trainer.dm.dataset.classnames
    prefix = upstream_prefix(ctx_init, learner.n_ctx)
    assert learner.prompt_prefix == prefix
    params = {k: v.requires_grad_() for k, v in randomise_prompts(trainer).items()}
    reference = load_clip(clip_path).float()
    batch = a_batch(len(classnames))

    trainer.before_test()
    logits = trainer.model_inference(batch["img"])
    trainer.after_test()
    ref_logits, _, _ = upstream_logits(reference, params, batch["img"], prefix, classnames, depth_text, depth_vision)
    assert_close(logits, ref_logits, "eval logits")

    ref = reference_losses(reference, params, batch, prefix, classnames)
    ref_grads = dict(zip(params, torch.autograd.grad(ref["loss"], list(params.values()))))
    summary = trainer.forward_backward(batch)  # a plain {"img", "label"} batch, no batch index
    for name, value in ref.items():
        assert abs(summary[name] - value.item()) <= TOL, (name, summary[name], value.item())
    named = dict(learner.named_parameters())
    assert set(named) == set(ref_grads)
    for name, grad in ref_grads.items():
        assert grad.abs().sum() > 0, name  # the reference itself uses every prompt
        assert_close(named[name].grad, grad, f"gradient of {name}")
    return summary


IVLP_VARIANTS = {
    # MaPLe paper's IVLP: 2+2 tokens in every block; "a photo" learns, "of a" stays frozen text.
    "2+2 every block": (2, 2, 3, 3),
    # The language-only config: no visual prompts at all.
    "language only": (4, 0, 3, 0),
    # More than 4 text tokens start random ("X X X X X"); visual prompts at the input only.
    "5+3 partial depth": (5, 3, 2, 1),
}


@pytest.mark.parametrize("variant", list(IVLP_VARIANTS))
def test_ivlp_matches_upstream(variant, data_root, clip_path, tmp_path):
    n_text, n_vision, depth_text, depth_vision = IVLP_VARIANTS[variant]
    trainer = build("IVLP", data_root, clip_path, tmp_path, *vl_opts("IVLP", n_text, n_vision, depth_text, depth_vision))
    assert trainer.image_encoder_is_frozen == (depth_vision == 0 or n_vision == 0)

    def losses(model, params, batch, prefix, classnames):
        logits, _, _ = upstream_logits(model, params, batch["img"], prefix, classnames, depth_text, depth_vision)
        return {"loss": F.cross_entropy(logits, batch["label"])}

    summary = check_against_upstream(trainer, clip_path, depth_text, depth_vision, "a photo of a", losses)
    assert "acc" in summary


@pytest.mark.parametrize("depths", [(3, 3), (2, 1)])
def test_promptsrc_matches_upstream(depths, data_root, clip_path, tmp_path):
    depth_text, depth_vision = depths
    trainer = build("PromptSRC", data_root, clip_path, tmp_path, *vl_opts("PromptSRC", 4, 4, depth_text, depth_vision))

    def losses(model, params, batch, prefix, classnames):
        return upstream_promptsrc_losses(model, params, batch["img"], batch["label"], prefix, classnames,
                                         depth_text, depth_vision, IMAGENET_TEMPLATES, 25, 10)

    summary = check_against_upstream(trainer, clip_path, depth_text, depth_vision, "a photo of a", losses)
    assert summary["loss_scl_text"] > 0 and summary["loss_scl_image"] > 0 and summary["loss_scl_logits"] > 0


def test_promptsrc_teacher_is_computed_once_and_only_for_training(data_root, clip_path, tmp_path):
    trainer = build("PromptSRC", data_root, clip_path, tmp_path, *vl_opts("PromptSRC", 4, 4, 3, 3))
    assert trainer.self_regulation.teacher_text is None  # evaluation never needs it
    trainer.test()
    assert trainer.self_regulation.teacher_text is None
    batch = a_batch(5)
    trainer.forward_backward(batch)
    teacher = trainer.self_regulation.teacher_text
    trainer.forward_backward(batch)
    assert trainer.self_regulation.teacher_text is teacher  # computed once, never saved


# ---------------------------------------------------------------------------- GPA
def test_gpa_weights_follow_the_normal_density():
    weights = gpa_epoch_weights(15, 1, 20)
    assert sum(weights) == pytest.approx(1.0, abs=1e-12)
    assert [round(w, 3) for w in weights[12:17]] == [0.054, 0.242, 0.399, 0.242, 0.054]
    assert weights[0] < 1e-30 and np.argmax(weights) == 14  # epoch 15 (1-based) peaks
    from scipy.stats import norm

    for mean, std, n in ((6, 10, 20), (30, 30, 50), (45, 5, 50), (2, 1, 3)):
        density = norm.pdf(np.arange(1, n + 1), loc=mean, scale=std)
        assert np.allclose(gpa_epoch_weights(mean, std, n), density / density.sum(), rtol=1e-12, atol=0)
    assert max(gpa_epoch_weights(45, 5, 50)) == pytest.approx(0.092, abs=5e-4)
    with pytest.raises(ValueError, match="GPA_STD"):
        gpa_epoch_weights(15, 0, 20)


GPA_OPTS = vl_opts("PromptSRC", 4, 4, 3, 3, "OPTIM.MAX_EPOCH", "3", "OPTIM.LR", "0.5",
                   "TRAINER.PROMPTSRC.GPA_MEAN", "2", "TRAINER.PROMPTSRC.GPA_STD", "1")


def saved_prompts(out, epoch):
    path = osp.join(out, CHECKPOINT_NAME, f"model.pth.tar-{epoch}")
    return torch.load(path, map_location="cpu", weights_only=True)


def test_gpa_deploys_the_weighted_prompts_of_all_epochs(data_root, clip_path, tmp_path):
    trainer = build("PromptSRC", data_root, clip_path, tmp_path / "run", *GPA_OPTS)
    per_epoch = []
    run_epoch = trainer.run_epoch

    def record():  # the prompts at the end of each epoch, before GPA touches them
        run_epoch()
        per_epoch.append({k: v.detach().clone() for k, v in trainer.model.prompt_learner.state_dict().items()})

    trainer.run_epoch = record
    trainer.train()
    assert len(per_epoch) == 3
    weights = gpa_epoch_weights(2, 1, 3)
    final = saved_prompts(tmp_path / "run", 3)["state_dict"]
    assert set(final) == set(per_epoch[0])
    for key in final:
        expected = sum(w * epoch[key] for w, epoch in zip(weights, per_epoch))
        assert torch.allclose(final[key], expected, atol=1e-6), key
        assert not torch.allclose(final[key], per_epoch[-1][key], atol=1e-4), key  # not the last epoch's
        assert torch.equal(trainer.model.prompt_learner.state_dict()[key], final[key])  # the tested model


class Interrupt(Exception):
    pass


def train_until(trainer, epoch: int) -> None:
    """Train, interrupted when the 0-based ``epoch`` starts (its predecessor is saved)."""
    run_epoch = trainer.run_epoch

    def stop_at_epoch():
        if trainer.epoch == epoch:
            raise Interrupt
        run_epoch()

    trainer.run_epoch = stop_at_epoch
    with pytest.raises(Interrupt):
        trainer.train()


def test_gpa_resumes_bit_identically(data_root, clip_path, tmp_path):
    full = build("PromptSRC", data_root, clip_path, tmp_path / "full", *GPA_OPTS)
    full.train()

    train_until(build("PromptSRC", data_root, clip_path, tmp_path / "cut", *GPA_OPTS), epoch=2)
    mid = saved_prompts(tmp_path / "cut", 2)
    assert mid["gpa_epochs"] == 2 and set(mid["gpa_sum"]) == set(mid["state_dict"])

    resumed = build("PromptSRC", data_root, clip_path, tmp_path / "cut", *GPA_OPTS)
    resumed.train()
    ours, reference = saved_prompts(tmp_path / "cut", 3)["state_dict"], saved_prompts(tmp_path / "full", 3)["state_dict"]
    for key in reference:
        assert torch.equal(ours[key], reference[key]), key


def test_resume_without_gpa_state_is_refused(data_root, clip_path, tmp_path):
    train_until(build("PromptSRC", data_root, clip_path, tmp_path, *GPA_OPTS), epoch=1)
    path = osp.join(tmp_path, CHECKPOINT_NAME, "model.pth.tar-1")
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("gpa_sum", "gpa_epochs", "gpa_weights"):
        del checkpoint[key]
    torch.save(checkpoint, path)  # as upstream: a checkpoint without the running sum
    with pytest.raises(RuntimeError, match="holds no GPA state"):
        build("PromptSRC", data_root, clip_path, tmp_path, *GPA_OPTS).train()


# --------------------------------------------------------------------- checkpoints
def test_checkpoints_hold_the_prompts_only_and_reload(data_root, clip_path, tmp_path):
    opts = vl_opts("IVLP", 2, 2, 3, 2, "OPTIM.MAX_EPOCH", "1")
    train.cli(cli_args("IVLP", data_root, clip_path, tmp_path / "train", *opts))
    saved = saved_prompts(tmp_path / "train", 1)["state_dict"]
    assert set(saved) == {"ctx", "deep_text_ctx.1", "deep_text_ctx.2", "visual_ctx", "deep_visual_ctx.1"}
    train.cli(cli_args("IVLP", data_root, clip_path, tmp_path / "new", *opts, "DATASET.SUBSAMPLE_CLASSES", "new",
                       flags=("--eval-only", "--model-dir", str(tmp_path / "train"), "--load-epoch", "1")))
    log = (tmp_path / "new" / "log.txt").read_text()
    assert f"Loading weights to {CHECKPOINT_NAME}" in log and "* total: 10" in log


def upstream_state_dict(reference, n_ctx_text, n_ctx_vision, depth_text, depth_vision, promptsrc):
    """What upstream saves: the whole CustomCLIP (prompts, class buffers, frozen CLIP)."""
    g = torch.Generator().manual_seed(7)
    width = reference.ln_final.weight.shape[0]
    vwidth = reference.visual.conv1.out_channels
    sd = {"prompt_learner.ctx": torch.randn(n_ctx_text, width, generator=g).half(),  # fp16, as upstream's
          "prompt_learner.token_prefix": torch.zeros(5, 1, width), "prompt_learner.token_suffix": torch.zeros(5, 9, width),
          "image_encoder.VPT": torch.randn(n_ctx_vision, vwidth, generator=g), "logit_scale": reference.logit_scale}
    for i in range(1, depth_text):
        sd[f"text_encoder.transformer.resblocks.{i}.VPT_shallow"] = torch.randn(n_ctx_text, width, generator=g)
    for i in range(1, depth_vision):
        sd[f"image_encoder.transformer.resblocks.{i}.VPT_shallow"] = torch.randn(n_ctx_vision, vwidth, generator=g)
    for key, value in reference.state_dict().items():
        if key.startswith("visual."):
            sd["image_encoder." + key[len("visual."):]] = value.half()
            if promptsrc:
                sd["prompt_learner.ZS_image_encoder." + key[len("visual."):]] = value.half()
        elif key.startswith(("transformer.", "positional_embedding", "ln_final", "text_projection")):
            sd["text_encoder." + key] = value.half()
    return sd


@pytest.mark.parametrize("name", ["IVLP", "PromptSRC"])
def test_upstream_zoo_checkpoint_loads(name, data_root, clip_path, tmp_path):
    opts = vl_opts(name, 4, 4, 3, 3)
    reference = load_clip(clip_path).float()
    sd = upstream_state_dict(reference, 4, 4, 3, 3, promptsrc=name == "PromptSRC")
    zoo = tmp_path / "zoo"
    (zoo / CHECKPOINT_NAME).mkdir(parents=True)
    torch.save({"state_dict": sd, "epoch": 20, "optimizer": None, "scheduler": None},
               zoo / CHECKPOINT_NAME / "model.pth.tar-20")

    trainer = build(name, data_root, clip_path, tmp_path / "eval", *opts)
    trainer.load_model(str(zoo), epoch=20)
    ours = dict(trainer.model.prompt_learner.named_parameters())
    assert torch.equal(ours["ctx"], sd["prompt_learner.ctx"].float())
    assert torch.equal(ours["visual_ctx"], sd["image_encoder.VPT"])
    for i in (1, 2):
        assert torch.equal(ours[f"deep_text_ctx.{i}"], sd[f"text_encoder.transformer.resblocks.{i}.VPT_shallow"])
        assert torch.equal(ours[f"deep_visual_ctx.{i}"], sd[f"image_encoder.transformer.resblocks.{i}.VPT_shallow"])

    # The command users run, on the new classes; a DataParallel-saved file ("module.") too.
    torch.save({"state_dict": {"module." + k: v for k, v in sd.items()}, "epoch": 20},
               zoo / CHECKPOINT_NAME / "model.pth.tar-20")
    train.cli(cli_args(name, data_root, clip_path, tmp_path / "cli", *opts, "DATASET.SUBSAMPLE_CLASSES", "new",
                       flags=("--eval-only", "--model-dir", str(zoo), "--load-epoch", "20")))
    log = (tmp_path / "cli" / "log.txt").read_text()
    assert "prompt tensors kept" in log and "=> result" in log

    deeper = build(name, data_root, clip_path, tmp_path / "other", *vl_opts(name, 4, 4, 2, 3))
    with pytest.raises(RuntimeError, match="unexpected keys.*deep_text_ctx.2"):
        deeper.load_model(str(zoo), epoch=20)  # a checkpoint of another depth does not fit


# ------------------------------------------------------------- memory, precision
def saved_tensor_bytes(fn):
    """Bytes of the tensors autograd keeps for the backward pass while ``fn`` runs."""
    total = [0]

    def pack(t):
        total[0] += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return out, total[0]


def test_activation_checkpointing_bounds_memory_on_1000_classes(data_root, clip_path, tmp_path):
    trainer = build("IVLP", data_root, clip_path, tmp_path, *vl_opts("IVLP", 2, 2, 3, 3))
    names = [f"class {i} " + "word " * (i % 7) for i in range(1000)]
    clip_model = load_clip(clip_path).float()
    trainer.model = trainer.build_custom_model(trainer.cfg, names, clip_model)
    learner = trainer.model.prompt_learner
    batch = a_batch(1000)
    results = {}
    for enabled in (False, True):
        trainer.model.activation_checkpointing = enabled
        for p in learner.parameters():
            p.grad = None
        loss, kept = saved_tensor_bytes(lambda: trainer.compute_loss(batch["img"], batch["label"])[0])
        loss.backward()
        results[enabled] = (loss.detach(), kept, {k: p.grad.clone() for k, p in learner.named_parameters()})
    (plain_loss, plain_bytes, plain_grads), (ckpt_loss, ckpt_bytes, ckpt_grads) = results[False], results[True]
    assert_close(ckpt_loss, plain_loss, "loss")
    for key, grad in plain_grads.items():
        assert_close(ckpt_grads[key], grad, f"gradient of {key}")
    assert ckpt_bytes < plain_bytes / 5, (ckpt_bytes, plain_bytes)


@pytest.mark.parametrize("name", ["IVLP", "PromptSRC"])
def test_act_checkpoint_config_gives_the_same_step(name, data_root, clip_path, tmp_path):
    summaries, grads = [], []
    for enabled in ("False", "True"):
        trainer = build(name, data_root, clip_path, tmp_path / enabled, *vl_opts(name, 4, 4, 3, 3),
                        "MODEL.ACT_CHECKPOINT", enabled)
        assert trainer.model.activation_checkpointing == (enabled == "True")
        summaries.append(trainer.forward_backward(a_batch(5)))
        grads.append({k: p.grad for k, p in trainer.model.prompt_learner.named_parameters()})
    for key in summaries[0]:
        assert summaries[1][key] == pytest.approx(summaries[0][key], abs=TOL), key
    for key in grads[0]:
        assert_close(grads[1][key], grads[0][key], f"gradient of {key}")


def test_fp16_clip_keeps_upstream_dtypes_and_an_fp32_teacher(data_root, clip_path, tmp_path):
    """PREC fp16 as upstream lays it out (CLIP fp16, ctx fp16, the other prompts fp32), run on CPU
    where half precision works: outputs are fp16 and finite, gradients reach every prompt, and the
    teacher is computed in fp32 from the fp16 weights, as upstream's float() copy does."""
    trainer = build("PromptSRC", data_root, clip_path, tmp_path, *vl_opts("PromptSRC", 4, 4, 3, 3))
    fp16_clip = load_clip(clip_path)
    assert fp16_clip.dtype == torch.float16
    learner = VLPromptLearner(trainer.dm.dataset.classnames, fp16_clip, 4, 4, 3, 3, verbose=False)
    dtypes = {k: v.dtype for k, v in learner.state_dict().items()}
    assert dtypes.pop("ctx") == torch.float16 and set(dtypes.values()) == {torch.float32}
    trainer.model = PromptCLIP(fp16_clip, learner)
    batch = a_batch(5)
    losses, _ = trainer.compute_loss(batch["img"], batch["label"])
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in learner.parameters())
    assert trainer.model.text_encoder.dtype == torch.float16  # the teacher's fp32 copy left it alone
    teacher = trainer.self_regulation.teacher_text
    assert teacher.dtype == torch.float32
    ref = upstream_teacher_text(load_clip(clip_path).float(), trainer.dm.dataset.classnames, IMAGENET_TEMPLATES)
    assert_close(teacher, ref / ref.norm(dim=-1, keepdim=True), "fp32 teacher of the fp16 CLIP")


@pytest.mark.parametrize("name", ["IVLP", "PromptSRC"])
def test_amp_step_works(name, data_root, clip_path, tmp_path):
    """PREC amp (upstream PromptSRC crashes: its forward returns a tuple to GradScaler), run with
    CPU autocast in fp16 and a CPU grad scaler."""
    trainer = build(name, data_root, clip_path, tmp_path, *vl_opts(name, 4, 4, 3, 3))
    trainer.precision = Precision("amp", "amp", "cpu", torch.float32, torch.float16)
    trainer.scaler = trainer.precision.grad_scaler()
    before = {k: v.clone() for k, v in trainer.model.prompt_learner.state_dict().items()}
    after = trainer.model.prompt_learner.state_dict()
    for _ in range(20):  # the scaler skips steps (and lowers its scale) while fp16 gradients overflow
        summary = trainer.forward_backward(a_batch(5))
        assert np.isfinite(summary["loss"])
        if all(not torch.equal(after[k], v) for k, v in before.items()):
            break
    assert all(not torch.equal(after[k], v) for k, v in before.items())  # a scaled step was taken


# ---------------------------------------------------------------------- errors
def test_bad_depths_and_backbones_are_explained(tiny_clip):
    with pytest.raises(ValueError, match=r"PROMPT_DEPTH_VISION=2: at most the 1 blocks"):
        VLPromptLearner(["dog"], tiny_clip, depth_text=2, depth_vision=2, verbose=False)
    with pytest.raises(ValueError, match=r"TRAINER.PROMPTSRC.PROMPT_DEPTH_TEXT=3: .* the 2 blocks"):
        VLPromptLearner(["dog"], tiny_clip, depth_text=3, depth_vision=1, config_prefix="TRAINER.PROMPTSRC",
                        verbose=False)
    with pytest.raises(ValueError, match="PROMPT_DEPTH_TEXT=0"):
        VLPromptLearner(["dog"], tiny_clip, depth_text=0, depth_vision=1, verbose=False)
    torch.manual_seed(0)
    resnet = clip.model.CLIP(32, 64, (1, 1, 1, 1), 64, None, 77, 49408, 64, 1, 1).float()
    with pytest.raises(TypeError, match="need a ViT backbone"):
        VLPromptLearner(["dog"], resnet, depth_text=1, depth_vision=1, verbose=False)
    # Text prompts only (depth 0 in the image tower) run on a ResNet CLIP.
    learner = VLPromptLearner(["dog", "cat"], resnet, n_ctx_text=4, depth_text=1, depth_vision=0, verbose=False)
    assert PromptCLIP(resnet, learner)(torch.randn(1, 3, 64, 64)).shape == (1, 2)


def test_context_init_follows_upstream_rule(tiny_clip):
    short = VLPromptLearner(["dog"], tiny_clip, n_ctx_text=2, depth_text=1, depth_vision=0, verbose=False)
    embedding = tiny_clip.token_embedding(clip.tokenize("a photo of a dog."))[0]
    assert short.prompt_prefix == "a photo of a" and torch.equal(short.ctx.detach(), embedding[1:3])
    long = VLPromptLearner(["dog"], tiny_clip, n_ctx_text=5, depth_text=1, depth_vision=0, verbose=False)
    assert long.prompt_prefix == "X X X X X" and long.ctx.shape == (5, 64)
    tokens = long.tokenized_prompts[0]
    assert torch.equal(tokens, clip.tokenize("X X X X X dog.")[0, :len(tokens)])
    # Words enough for 5 tokens change nothing: upstream initialises from CTX_INIT only up to 4.
    words = "a centered satellite photo of a"
    assert bpe_length(words) >= 5
    five = VLPromptLearner(["dog"], tiny_clip, n_ctx_text=5, ctx_init=words, depth_text=1, depth_vision=0, verbose=False)
    assert five.prompt_prefix == "X X X X X"
    four = VLPromptLearner(["dog"], tiny_clip, n_ctx_text=4, ctx_init=words, depth_text=1, depth_vision=0, verbose=False)
    assert four.prompt_prefix == words and four.n_ctx == 4
