"""VPT against a reference written from upstream's code (muzairkhattak/multimodal-prompt-learning
``trainers/vpt.py``: the frozen "a photo of a {}." text features; its VPT ``VisionTransformer``,
the one ``tests/trainers/ivlp_reference.py`` restates): eval logits, the loss and every
prompt's gradient; what trains; checkpoints (ours and upstream's) and evaluation on the new
classes; bad input."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import train
from tests.trainers.ivlp_reference import upstream_image_features
from tests.trainers.tiny_runs import build_from_args, shrunk_run_args
from trainers.common.clip_loader import load_clip
from trainers.common.openai_clip import clip

VISION_BLOCKS = 3
TOL = 1e-5


@pytest.fixture()
def data_root(eurosat_root):
    return eurosat_root


@pytest.fixture()
def clip_path(three_block_clip_path):
    return three_block_clip_path


def cli_args(data_root, clip_path, out, *opts, subsample="base"):
    """The shipped config, shrunk to the tiny CLIP: 3 prompt tokens in every image block."""
    return shrunk_run_args("VPT", "VPT/vit_b16_c2_ep5_batch4_4", "VPT", data_root, clip_path, out,
                           "TRAINER.VPT.N_CTX_VISION", "3", "TRAINER.VPT.PROMPT_DEPTH_VISION", str(VISION_BLOCKS),
                           *opts, subsample=subsample)


def build(data_root, clip_path, out, *opts, subsample="base"):
    return build_from_args(cli_args(data_root, clip_path, out, *opts, subsample=subsample))


def upstream_text_features(model, classnames):
    """``FixedEmbeddings``: CLIP's ``encode_text`` of "a photo of a <name>." (unnormalised)."""
    tokens = torch.cat([clip.tokenize("a photo of a " + name.replace("_", " ") + ".") for name in classnames])
    with torch.no_grad():
        return model.encode_text(tokens)


def upstream_vpt_logits(model, params, image, classnames):
    """``CustomCLIP.forward``: normalised features, ``logit_scale.exp() * img @ text.T``."""
    text = upstream_text_features(model, classnames)
    img = upstream_image_features(model.visual, image, params, VISION_BLOCKS)
    img = img / img.norm(dim=-1, keepdim=True)
    text = text / text.norm(dim=-1, keepdim=True)
    return model.logit_scale.exp() * img @ text.t()


def as_upstream_params(prompts: torch.nn.Module):
    """Our prompt tensors under the names ``ivlp_reference`` reads."""
    params = {"visual_ctx": prompts.ctx}
    params.update({f"deep_visual_ctx.{i}": p for i, p in prompts.deep_ctx.items()})
    return params


def test_vpt_matches_upstream(data_root, clip_path, tmp_path):
    trainer = build(data_root, clip_path, tmp_path / "out", "TRAINER.VPT.TEMPLATE", "a photo of a {}.")
    prompts = trainer.model.visual_prompts
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in prompts.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    classnames = trainer.dm.dataset.classnames
    reference = load_clip(clip_path).float()
    params = {k: v.detach().clone().requires_grad_() for k, v in as_upstream_params(prompts).items()}
    batch = {"img": torch.randn(4, 3, 32, 32, generator=g), "label": torch.tensor([0, 1, 2, 4])}

    trainer.before_test()
    logits = trainer.model_inference(batch["img"])
    trainer.after_test()
    ref_logits = upstream_vpt_logits(reference, params, batch["img"], classnames)
    assert (logits - ref_logits).abs().max() <= TOL

    ref_loss = F.cross_entropy(ref_logits, batch["label"])
    ref_grads = torch.autograd.grad(ref_loss, list(params.values()))
    summary = trainer.forward_backward(batch)
    assert summary["loss"] == pytest.approx(ref_loss.item(), abs=TOL)
    ours = as_upstream_params(prompts)
    for (name, ref_grad) in zip(params, ref_grads):
        assert ref_grad.abs().sum() > 0, name  # every block's prompt matters
        assert (ours[name].grad - ref_grad).abs().max() <= TOL, name


def test_only_the_visual_prompts_train_and_the_text_side_is_the_dataset_template(data_root, clip_path, tmp_path):
    trainer = build(data_root, clip_path, tmp_path / "out")
    trainable = sorted(n for n, p in trainer.model.named_parameters() if p.requires_grad)
    assert trainable == ["visual_prompts.ctx"] + [f"visual_prompts.deep_ctx.{i}" for i in range(1, VISION_BLOCKS)]
    assert trainer.get_model_names() == ["prompt_learner"]
    assert not trainer.model.image_features_are_fixed  # no frozen-feature cache for VPT
    reference = load_clip(clip_path).float()
    template = "a centered satellite photo of {}."  # EuroSAT's hand-crafted template
    tokens = clip.tokenize([template.format(c) for c in trainer.dm.dataset.classnames])
    with torch.no_grad():
        expected = F.normalize(reference.encode_text(tokens), dim=-1)
    assert (trainer.model.text_features() - expected).abs().max() <= TOL
    before = trainer.model.text_features().clone()
    trainer.forward_backward({"img": torch.randn(4, 3, 32, 32), "label": torch.tensor([0, 1, 2, 3])})
    assert torch.equal(trainer.model.text_features(), before)


def test_trained_prompts_reload_and_evaluate_the_new_classes(data_root, clip_path, tmp_path):
    base = tmp_path / "base"
    train.cli(cli_args(data_root, clip_path, base))
    trained = torch.load(base / "prompt_learner" / "model.pth.tar-2", map_location="cpu", weights_only=True)["state_dict"]
    assert set(trained) == {"ctx"} | {f"deep_ctx.{i}" for i in range(1, VISION_BLOCKS)}  # the prompts only

    new = tmp_path / "new"
    train.cli(["--eval-only", "--model-dir", str(base), "--load-epoch", "2",
               *cli_args(data_root, clip_path, new, subsample="new")])
    log = (new / "log.txt").read_text()
    assert "model.pth.tar-2" in log and "=> result" in log

    trainer = build(data_root, clip_path, tmp_path / "reload", subsample="new")
    trainer.load_model(str(base), epoch=2)
    for name, value in trainer.model.visual_prompts.state_dict().items():
        assert torch.equal(value, trained[name]), name
    assert len(trainer.dm.dataset.classnames) == 5 and trainer.model.text_features().shape[0] == 5


def test_upstream_checkpoints_load(data_root, clip_path, tmp_path):
    """Upstream registers its whole CustomCLIP: the prompts are found among the frozen CLIP."""
    trainer = build(data_root, clip_path, tmp_path / "out")
    g = torch.Generator().manual_seed(3)
    width = trainer.model.visual_prompts.ctx.shape[1]
    upstream = {"image_encoder.VPT": torch.randn(3, width, generator=g),
                "image_encoder.conv1.weight": torch.zeros(1), "logit_scale": torch.zeros(())}
    for i in range(1, VISION_BLOCKS):
        upstream[f"image_encoder.transformer.resblocks.{i}.VPT_shallow"] = torch.randn(3, width, generator=g)
    ours = trainer.translate_checkpoint("prompt_learner", upstream)
    trainer.model.visual_prompts.load_state_dict(ours)
    assert torch.equal(trainer.model.visual_prompts.ctx, upstream["image_encoder.VPT"])
    assert torch.equal(trainer.model.visual_prompts.deep_ctx["2"],
                       upstream["image_encoder.transformer.resblocks.2.VPT_shallow"])


@pytest.mark.parametrize("opts, message", [
    (("TRAINER.VPT.PROMPT_DEPTH_VISION", "0"), "TRAINER.VPT.PROMPT_DEPTH_VISION=0"),
    (("TRAINER.VPT.PROMPT_DEPTH_VISION", "7"), "at most the 3 blocks"),
    (("TRAINER.VPT.N_CTX_VISION", "0"), "TRAINER.VPT.N_CTX_VISION=0"),
])
def test_bad_settings_name_the_key(opts, message, data_root, clip_path, tmp_path):
    with pytest.raises(ValueError, match=message):
        build(data_root, clip_path, tmp_path / "out", *opts)


def test_activation_checkpointing_gives_the_same_step(data_root, clip_path, tmp_path):
    batch = {"img": torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(5)), "label": torch.tensor([0, 1, 2, 3])}
    grads = []
    for flag in ("False", "True"):
        trainer = build(data_root, clip_path, tmp_path / flag, "MODEL.ACT_CHECKPOINT", flag)
        assert trainer.model.image_encoder.checkpointing is (flag == "True")
        trainer.forward_backward(batch)
        grads.append([p.grad.clone() for p in trainer.model.visual_prompts.parameters()])
    for plain, checkpointed in zip(*grads):
        assert torch.allclose(plain, checkpointed, atol=1e-6)
