"""MaPLe against an independent re-statement of upstream's computation, its checkpoints
(ours and the upstream model zoo's), activation checkpointing, precision and bad input.

The reference below follows muzairkhattak/multimodal-prompt-learning: ``trainers/maple.py``
(``MultiModalPromptLearner.forward``, ``CustomCLIP.forward``, ``TextEncoder``) and the MaPLe
blocks of ``clip/model.py`` (``ResidualAttentionBlock_MaPLe``, ``VisionTransformer_MaPLe``):
full 77-token text sequences through CLIP's own blocks, the deep prompts inserted with
upstream's counter, ``ln_final`` over every position before the EOT is picked, its fp16
casts removed (float32 throughout). It uses the CLIP modules only, never the code under test.
"""
from __future__ import annotations

import os.path as osp
import re

import pytest
import torch
import torch.nn.functional as F

import train
from dassl.engine import build_trainer
from dassl.utils import set_random_seed
from tests.utils.fabricate import make_eurosat_tree
from tests.utils.tiny_clip import build_tiny_clip, make_tiny_clip
from tests.utils.upstream_checkpoint import save_upstream_checkpoint
from trainers.common import model as model_module
from trainers.common.clip_loader import load_clip
from trainers.common.model import PromptCLIP
from trainers.common.openai_clip import clip
from trainers.common.precision import Precision
from trainers.parts.coupled_prompts import MultiModalPromptLearner

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TEXT_BLOCKS, VISION_BLOCKS = 3, 4
ATOL = 1e-5


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> str:
    return make_eurosat_tree(tmp_path_factory.mktemp("data"), n_per_class=6)


@pytest.fixture(scope="module")
def clip_path(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("clip") / "tiny_maple.pt"
    return str(make_tiny_clip(path, vision_layers=VISION_BLOCKS, text_layers=TEXT_BLOCKS))


def run_args(data_root, clip_path, out, *extra):
    """train.py arguments: the shipped base-to-novel config, shrunk to the tiny CLIP."""
    return [
        "--root", data_root, "--seed", "1", "--trainer", "MaPLe", "--output-dir", str(out),
        "--dataset-config-file", osp.join(REPO, "configs/datasets/eurosat.yaml"),
        "--config-file", osp.join(REPO, "configs/trainers/MaPLe/vit_b16_c2_ep5_batch4_2ctx.yaml"),
        *extra,
        "MODEL.BACKBONE.NAME", clip_path, "INPUT.SIZE", "(32, 32)", "OPTIM.MAX_EPOCH", "2",
        "DATALOADER.NUM_WORKERS", "0", "DATALOADER.TEST.BATCH_SIZE", "4", "DATASET.NUM_SHOTS", "2",
        "DATASET.SUBSAMPLE_CLASSES", "base", "DATASET.CACHE_DIR", str(out) + "_cache",
        "TRAINER.MAPLE.PREC", "fp32", "TRAINER.MAPLE.PROMPT_DEPTH", "3",
    ]


def build(data_root, clip_path, out, *opts):
    args = train.build_parser().parse_args(run_args(data_root, clip_path, out) + list(opts))
    train.register_components()
    cfg = train.setup_cfg(args)
    set_random_seed(cfg.SEED)
    return build_trainer(cfg)


def randomise(learner: torch.nn.Module, seed: int = 0) -> None:
    """Distinct random values in every trainable tensor (upstream's projections start equal)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in learner.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.05)


# ------------------------------------------------------------ the reference
def reference_logits(clip_model, classnames, params, images, n_ctx=2, ctx_init="a photo of a"):
    """Upstream MaPLe's forward for the given trainable tensors ``params`` (upstream names)."""
    depth = 1 + sum(1 for k in params if k.startswith("compound_prompts_text."))
    texts = [ctx_init + " " + name.replace("_", " ") + "." for name in classnames]
    tokenized = clip.tokenize(texts)  # (n_cls, 77)
    with torch.no_grad():
        embedding = clip_model.token_embedding(tokenized)
    n_cls = len(classnames)
    ctx = params["ctx"].unsqueeze(0).expand(n_cls, -1, -1)
    prompts = torch.cat([embedding[:, :1], ctx, embedding[:, 1 + n_ctx:]], dim=1)
    text_deep = [params[f"compound_prompts_text.{i}"] for i in range(depth - 1)]
    visual_deep = [
        F.linear(text_deep[i], params[f"compound_prompt_projections.{i}.weight"],
                 params[f"compound_prompt_projections.{i}.bias"])
        for i in range(depth - 1)
    ]
    shared_ctx = F.linear(params["ctx"], params["proj.weight"], params["proj.bias"])

    # TextEncoder + ResidualAttentionBlock_MaPLe (text_layer=True)
    x = (prompts + clip_model.positional_embedding).permute(1, 0, 2)
    counter = 0
    for i, block in enumerate(clip_model.transformer.resblocks):
        if i > 0 and counter <= len(text_deep) - 1:
            deep = text_deep[counter].expand(x.shape[1], -1, -1).permute(1, 0, 2)
            x = torch.cat([x[:1], deep, x[1 + n_ctx:]], dim=0)
            counter += 1
        x = block(x)
    x = clip_model.ln_final(x.permute(1, 0, 2))
    text = x[torch.arange(x.shape[0]), tokenized.argmax(dim=-1)] @ clip_model.text_projection

    # VisionTransformer_MaPLe + ResidualAttentionBlock_MaPLe (text_layer=False)
    v = clip_model.visual
    x = v.conv1(images)
    x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)
    x = torch.cat([v.class_embedding + torch.zeros(x.shape[0], 1, x.shape[-1]), x], dim=1)
    x = x + v.positional_embedding
    x = torch.cat([x, shared_ctx.expand(x.shape[0], -1, -1)], dim=1)
    x = v.ln_pre(x).permute(1, 0, 2)
    counter = 0
    for i, block in enumerate(v.transformer.resblocks):
        if i > 0 and counter <= len(visual_deep) - 1:
            deep = visual_deep[counter].expand(x.shape[1], -1, -1).permute(1, 0, 2)
            x = torch.cat([x[:x.shape[0] - n_ctx], deep], dim=0)
            counter += 1
        x = block(x)
    image = v.ln_post(x.permute(1, 0, 2)[:, 0, :]) @ v.proj

    image = image / image.norm(dim=-1, keepdim=True)
    text = text / text.norm(dim=-1, keepdim=True)
    return clip_model.logit_scale.exp() * image @ text.t()


def batch_for(trainer, seed=0, size=4):
    g = torch.Generator().manual_seed(seed)
    images = torch.randn(size, 3, 32, 32, generator=g)
    labels = torch.randint(0, trainer.num_classes, (size,), generator=g)
    return images, labels


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_logits_loss_and_gradients_equal_upstream(depth, data_root, clip_path, tmp_path):
    trainer = build(data_root, clip_path, tmp_path, "TRAINER.MAPLE.PROMPT_DEPTH", str(depth))
    learner = trainer.model.prompt_learner
    randomise(learner, seed=depth)
    params = {k: v.detach().clone().requires_grad_(True) for k, v in learner.named_parameters()}
    expected_names = {"ctx", "proj.weight", "proj.bias"} | {
        f"compound_prompts_text.{i}" for i in range(depth - 1)} | {
        f"compound_prompt_projections.{i}.{w}" for i in range(depth - 1) for w in ("weight", "bias")}
    assert set(params) == expected_names  # upstream's parameter names
    images, labels = batch_for(trainer, seed=depth)
    reference_clip = load_clip(clip_path).float()
    ref_logits = reference_logits(reference_clip, trainer.dm.dataset.classnames, params, images)
    ref_loss = F.cross_entropy(ref_logits, labels)
    ref_grads = dict(zip(params, torch.autograd.grad(ref_loss, list(params.values()))))

    # (1) evaluation logits
    trainer.set_model_mode("eval")
    trainer.before_test()
    logits = trainer.model_inference(images)
    trainer.after_test()
    torch.testing.assert_close(logits, ref_logits.detach(), atol=ATOL, rtol=0)

    # (2) the training loss and (3) every trainable gradient, from a plain dict batch
    trainer.set_model_mode("train")
    summary = trainer.forward_backward({"img": images, "label": labels})
    assert summary["loss"] == pytest.approx(ref_loss.item(), abs=ATOL)
    for name, p in learner.named_parameters():
        assert p.grad is not None, name
        torch.testing.assert_close(p.grad, ref_grads[name], atol=ATOL, rtol=0, msg=name)
        assert not torch.equal(p.detach(), params[name].detach()), f"{name} did not step"
    # The prompts matter: without the deep ones the logits differ.
    if depth > 1:
        shallow = {k: v for k, v in params.items() if k in ("ctx", "proj.weight", "proj.bias")}
        assert not torch.allclose(reference_logits(reference_clip, trainer.dm.dataset.classnames, shallow, images),
                                  ref_logits, atol=1e-3)


def test_upstream_prompt_layout(clip_path):
    model = load_clip(clip_path).float()
    learner = MultiModalPromptLearner(["dog", "hot air balloon"], model, prompt_depth=3, verbose=False)
    emb = model.token_embedding(clip.tokenize(["a photo of a dog."]))
    assert torch.equal(learner.ctx.detach(), emb[0, 1:3])  # "a photo" learns
    assert torch.equal(learner()[0], emb[0, :learner.tokenized_prompts.shape[1]])  # "of a dog." stays
    assert learner.proj.weight.shape == (model.visual.conv1.out_channels, model.ln_final.weight.shape[0])
    projections = learner.compound_prompt_projections
    assert torch.equal(projections[0].weight, projections[1].weight)  # upstream deep-copies one layer
    # N_CTX above 4: random init and "X" words, as upstream, even when CTX_INIT is long enough.
    long = MultiModalPromptLearner(["dog"], model, n_ctx=5, ctx_init="a photo of a big", prompt_depth=1,
                                   verbose=False)
    assert long.prompt_prefix == "X X X X X"
    # N_CTX beyond the words: random init instead of swallowing the class name (upstream's defect).
    short = MultiModalPromptLearner(["dog"], model, n_ctx=3, ctx_init="a photo", prompt_depth=1, verbose=False)
    assert short.prompt_prefix == "X X X"


# ------------------------------------------------------------ checkpoints
def test_checkpoint_holds_the_prompt_learner_only_and_reloads(data_root, clip_path, tmp_path):
    train_dir, eval_dir = tmp_path / "train", tmp_path / "eval"
    train.cli(run_args(data_root, clip_path, train_dir))
    saved = torch.load(train_dir / "MultiModalPromptLearner" / "model.pth.tar-2", weights_only=True)["state_dict"]
    assert set(saved) == {"ctx", "proj.weight", "proj.bias", "compound_prompts_text.0", "compound_prompts_text.1",
                          "compound_prompt_projections.0.weight", "compound_prompt_projections.0.bias",
                          "compound_prompt_projections.1.weight", "compound_prompt_projections.1.bias"}
    train.cli(run_args(data_root, clip_path, eval_dir, "--eval-only", "--model-dir", str(train_dir),
                       "--load-epoch", "2") + ["DATASET.SUBSAMPLE_CLASSES", "new"])
    log = (eval_dir / "log.txt").read_text()
    assert "Loading weights to MultiModalPromptLearner" in log and "* total: 10" in log


def upstream_zoo_state(clip_path, values):
    """A state dict as upstream MaPLe saves it: the whole CustomCLIP (fp16, PREC fp16), i.e.
    ``prompt_learner.*`` (class-name buffers included) plus every frozen CLIP weight."""
    fp16_clip = load_clip(clip_path)  # clip.build_model's fp16 layout, as upstream trains
    state = {f"prompt_learner.{k}": v.half() if k in ("ctx", "proj.weight", "proj.bias") else v
             for k, v in values.items()}
    state["prompt_learner.token_prefix"] = torch.zeros(7, 1, 64, dtype=torch.half)  # another class set
    state["prompt_learner.token_suffix"] = torch.zeros(7, 74, 64, dtype=torch.half)
    state.update({f"image_encoder.{k}": v for k, v in fp16_clip.visual.state_dict().items()})
    text_keys = ("transformer.", "positional_embedding", "ln_final.", "text_projection")
    state.update({f"text_encoder.{k}": v for k, v in fp16_clip.state_dict().items() if k.startswith(text_keys)})
    state["logit_scale"] = fp16_clip.logit_scale.detach()
    return state


def accuracy(log_dir) -> float:
    return float(re.findall(r"\* accuracy: ([\d.]+)%", (log_dir / "log.txt").read_text())[-1])


def test_upstream_zoo_checkpoint_loads_safely_and_evaluates(data_root, clip_path, tmp_path, monkeypatch):
    monkeypatch.delenv("DASSL_TRUST_CHECKPOINTS", raising=False)
    trainer = build(data_root, clip_path, tmp_path / "fresh")
    learner = trainer.model.prompt_learner
    randomise(learner, seed=7)
    values = {k: v.detach().clone() for k, v in learner.state_dict().items()}
    randomise(learner, seed=8)  # the loaded values must replace these
    zoo = tmp_path / "zoo" / "base" / "seed1"
    save_upstream_checkpoint(str(zoo), "MultiModalPromptLearner", upstream_zoo_state(clip_path, values), epoch=5)

    trainer.load_model(str(zoo), epoch=5)
    for key, value in learner.state_dict().items():
        # ctx and proj went through fp16 in the upstream file, as upstream's PREC fp16 keeps them
        expected = values[key].half().float() if key in ("ctx", "proj.weight", "proj.bias") else values[key]
        assert torch.equal(value, expected), key
    expected_accuracy = trainer.test()

    # train.py, as reproduce_maple.sh runs it: --eval-only --model-dir ... --load-epoch 5.
    out = tmp_path / "eval"
    train.cli(run_args(data_root, clip_path, out, "--eval-only", "--model-dir", str(zoo), "--load-epoch", "5"))
    log = (out / "log.txt").read_text()
    assert 'Loading weights to MultiModalPromptLearner from "' in log and "(epoch = 5)" in log
    assert accuracy(out) == pytest.approx(expected_accuracy, abs=0.01)


def test_upstream_checkpoint_of_another_backbone_is_refused(data_root, clip_path, tmp_path):
    trainer = build(data_root, clip_path, tmp_path / "fresh")
    values = {k: v.detach().clone() for k, v in trainer.model.prompt_learner.state_dict().items()}
    state = upstream_zoo_state(clip_path, values)
    state["image_encoder.conv1.weight"] = torch.zeros(64, 3, 32, 32, dtype=torch.half)  # patch 32, not 16
    zoo = tmp_path / "zoo"
    save_upstream_checkpoint(str(zoo), "MultiModalPromptLearner", state, epoch=5)
    with pytest.raises(ValueError, match=r"image_encoder.conv1.weight.*another backbone.*MODEL.BACKBONE.NAME"):
        trainer.load_model(str(zoo), epoch=5)


def test_unknown_upstream_keys_are_reported(data_root, clip_path, tmp_path):
    trainer = build(data_root, clip_path, tmp_path / "fresh")
    values = {k: v.detach().clone() for k, v in trainer.model.prompt_learner.state_dict().items()}
    state = upstream_zoo_state(clip_path, values)
    state["prompt_learner.VPT_extra"] = torch.zeros(2)
    zoo = tmp_path / "zoo"
    save_upstream_checkpoint(str(zoo), "MultiModalPromptLearner", state, epoch=5)
    with pytest.raises(RuntimeError, match=r"unexpected keys \['VPT_extra'\]"):
        trainer.load_model(str(zoo), epoch=5)


# ------------------------------------------------------------ memory
def test_activation_checkpointing_gives_the_same_loss_and_gradients(data_root, clip_path, tmp_path, monkeypatch):
    monkeypatch.setattr(model_module, "CHECKPOINT_CHUNK_SIZE", 2)  # 5 classes: chunks of 2, 2, 1
    results = []
    for act_checkpoint in ("False", "True"):
        trainer = build(data_root, clip_path, tmp_path / act_checkpoint, "MODEL.ACT_CHECKPOINT", act_checkpoint)
        assert trainer.model.activation_checkpointing == (act_checkpoint == "True")
        assert trainer.model.image_encoder.checkpointing == (act_checkpoint == "True")
        randomise(trainer.model.prompt_learner, seed=3)
        images, labels = batch_for(trainer, seed=3)
        summary = trainer.forward_backward({"img": images, "label": labels})
        grads = {k: p.grad.clone() for k, p in trainer.model.prompt_learner.named_parameters()}
        results.append((summary["loss"], grads))
    (loss, grads), (loss_ck, grads_ck) = results
    assert loss_ck == pytest.approx(loss, abs=1e-6)
    for name, grad in grads.items():
        # Chunks sum the gradient contributions in another order: equal up to float rounding.
        torch.testing.assert_close(grads_ck[name], grad, atol=1e-6, rtol=1e-5, msg=name)


def saved_activation_bytes(model, images, labels) -> int:
    """Bytes the autograd graph keeps for the backward pass of one training loss."""
    total = 0

    def pack(t):
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = F.cross_entropy(model.logits(model.encode_image(images), model.text_features()), labels)
    loss.backward()
    return total


def test_activation_checkpointing_bounds_memory_on_1000_classes():
    clip_model = build_tiny_clip(image_resolution=32, vision_layers=2, text_layers=2).float()
    learner = MultiModalPromptLearner([f"class {i}" for i in range(1000)], clip_model, prompt_depth=2, verbose=False)
    model = PromptCLIP(clip_model, learner)
    model.requires_grad_(False)
    learner.requires_grad_(True)
    images, labels = torch.randn(4, 3, 32, 32), torch.tensor([0, 10, 500, 999])
    plain = saved_activation_bytes(model, images, labels)
    model.activation_checkpointing = True
    bounded = saved_activation_bytes(model, images, labels)
    # Without checkpointing every block's activations of all 1000 prompts are kept (~100 MiB
    # here); with it, only chunk inputs and outputs (well under 1 MiB).
    assert bounded * 50 < plain, (bounded, plain)


# ------------------------------------------------------------ precision
def test_parameter_dtypes_follow_upstream_in_fp16_and_are_float32_otherwise(clip_path):
    fp16_clip = load_clip(clip_path)  # clip.build_model: fp16 weights, as PREC fp16 on GPU
    learner = MultiModalPromptLearner(["dog", "cat"], fp16_clip, prompt_depth=3, verbose=False)
    dtypes = {k: p.dtype for k, p in learner.named_parameters()}
    assert dtypes["ctx"] == dtypes["proj.weight"] == torch.float16  # upstream: ctx in CLIP's dtype, proj .half()
    assert dtypes["compound_prompts_text.0"] == dtypes["compound_prompt_projections.0.weight"] == torch.float32
    # amp / bf16 / fp32 run on float32 weights: every trainable tensor is float32, so the grad
    # scaler can unscale them (upstream's fp16 proj made amp crash).
    for mode, autocast in (("amp", torch.float16), ("bf16", torch.bfloat16), ("fp32", None)):
        precision = Precision(mode, mode, "cuda", torch.float32, autocast)
        fp32_learner = MultiModalPromptLearner(["dog"], precision.apply(load_clip(clip_path)), prompt_depth=3,
                                               verbose=False)
        assert {p.dtype for p in fp32_learner.parameters()} == {torch.float32}, mode


def test_fp16_weights_and_autocast_run_and_agree_with_fp32(clip_path):
    """The fp16 layout (upstream's default) and bf16 autocast, on CPU: no dtype mismatch
    anywhere, and the logits close to the float32 ones (GPU runs are not testable here)."""
    names = ["dog", "hot air balloon", "tabby cat"]
    images = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))

    def logits_and_grads(clip_model, autocast=None):
        torch.manual_seed(0)
        learner = MultiModalPromptLearner(names, clip_model, prompt_depth=3, verbose=False)
        randomise(learner, seed=5)
        model = PromptCLIP(clip_model, learner)
        model.requires_grad_(False)
        learner.requires_grad_(True)
        context = torch.autocast("cpu", dtype=autocast) if autocast else torch.autocast("cpu", enabled=False)
        with context:
            logits = model(images)
        logits.float().sum().backward()
        return logits.float(), {k: p.grad for k, p in learner.named_parameters()}

    ref, ref_grads = logits_and_grads(load_clip(clip_path).float())
    for logits, grads in (logits_and_grads(load_clip(clip_path)),  # fp16 weights, fp16 ctx/proj
                          logits_and_grads(load_clip(clip_path).float(), autocast=torch.bfloat16)):
        torch.testing.assert_close(logits, ref, atol=0.1, rtol=0.05)
        assert all(g is not None and torch.isfinite(g).all() for g in grads.values())


# ------------------------------------------------------------ bad input
@pytest.mark.parametrize("depth", [0, TEXT_BLOCKS + 1])
def test_prompt_depth_must_fit_both_towers(depth, data_root, clip_path, tmp_path):
    with pytest.raises(ValueError, match=rf"TRAINER.MAPLE.PROMPT_DEPTH={depth}.*{TEXT_BLOCKS} text and "
                                         rf"{VISION_BLOCKS} image.*between 1 and {TEXT_BLOCKS}"):
        build(data_root, clip_path, tmp_path, "TRAINER.MAPLE.PROMPT_DEPTH", str(depth))


def test_class_specific_context_and_resnet_are_refused(clip_path):
    with pytest.raises(ValueError, match="TRAINER.MAPLE.CSC False"):
        MultiModalPromptLearner(["dog"], load_clip(clip_path).float(), csc=True, prompt_depth=1)
    rn = clip.model.CLIP(32, 64, (1, 1, 1, 1), 64, None, 77, 49408, 64, 1, 1).float()
    with pytest.raises(TypeError, match="ViT backbone"):
        MultiModalPromptLearner(["dog"], rn, prompt_depth=1)
