"""DePT against a reference written from upstream's code (Koorye/DePT ``trainers/elp_coop.py``:
``CustomCLIP._forward_feats``, ``_forward_logits_similarity``, ``_forward_logits_linear_probe``,
``_loss`` and the fused ``_forward_base``; ``FiLM`` of ``trainers/elp_maple.py``; CoOp's prompt
learner and text encoder) with its fp16 casts removed: the loss, every gradient and the fused
logits on the base classes; CoOp's logits alone on the new ones (the head, built for other
classes, not loaded); the head's learning rate; upstream spellings; bad input."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import train
from tests.trainers.tiny_runs import build_from_args, shrunk_run_args
from trainers.common.clip_loader import load_clip
from trainers.common.openai_clip import clip

TOL = 1e-5


@pytest.fixture()
def data_root(eurosat_root):
    return eurosat_root


def cli_args(data_root, clip_path, out, *opts, subsample="base"):
    """The shipped config, shrunk to the tiny CLIP: 4 context vectors."""
    return shrunk_run_args("DePT", "DePT/vit_b16_ep10_bs4_lr35", "DEPT", data_root, clip_path, out,
                           "TRAINER.DEPT.N_CTX", "4", *opts, subsample=subsample)


def build(data_root, clip_path, out, *opts, subsample="base"):
    return build_from_args(cli_args(data_root, clip_path, out, *opts, subsample=subsample))


# ------------------------------------------------------------ the reference
def upstream_text_features(model, ctx, classnames):
    """CoOp's ``PromptLearner.forward`` ("X X X X <name>.", ctx after SOS) + ``TextEncoder``."""
    n_ctx = ctx.shape[0]
    prefix = " ".join(["X"] * n_ctx)
    tokenized = torch.cat([clip.tokenize(prefix + " " + name.replace("_", " ") + ".") for name in classnames])
    with torch.no_grad():
        embedding = model.token_embedding(tokenized)
    prompts = torch.cat([embedding[:, :1], ctx.unsqueeze(0).expand(len(classnames), -1, -1), embedding[:, 1 + n_ctx:]], 1)
    x = model.transformer((prompts + model.positional_embedding).permute(1, 0, 2)).permute(1, 0, 2)
    x = model.ln_final(x)
    return x[torch.arange(x.shape[0]), tokenized.argmax(dim=-1)] @ model.text_projection


def film(x, scale, bias):
    return scale.unsqueeze(0) * x + bias.unsqueeze(0)


def similarity(model, text_feats, img_feats):
    text_feats = text_feats / text_feats.norm(dim=-1, keepdim=True)
    img_feats = img_feats / img_feats.norm(dim=-1, keepdim=True)
    return model.logit_scale.exp() * img_feats @ text_feats.t()


def upstream_loss(model, p, image, labels, classnames, weight):
    """``_forward_base`` in training: ``(1-w) CE(similarity) + w CE(linear([cwT(t)[y]; cwT(f)]), [y; y])``."""
    text_feats = upstream_text_features(model, p["ctx"], classnames)
    img_feats = model.encode_image(image)
    logits = similarity(model, text_feats, img_feats)
    text_lp, img_lp = film(text_feats, p["text_scale"], p["text_bias"]), film(img_feats, p["image_scale"], p["image_bias"])
    all_logits = torch.cat([text_lp[labels], img_lp]) @ p["classifier.weight"].t() + p["classifier.bias"]
    return (1 - weight) * F.cross_entropy(logits, labels) + weight * F.cross_entropy(all_logits, torch.cat([labels, labels]))


def upstream_base_logits(model, p, image, classnames, weight):
    """``_forward_base`` at test time: similarity and linear logits fused."""
    text_feats = upstream_text_features(model, p["ctx"], classnames)
    img_feats = model.encode_image(image)
    linear = film(img_feats, p["image_scale"], p["image_bias"]) @ p["classifier.weight"].t() + p["classifier.bias"]
    return (1 - weight) * similarity(model, text_feats, img_feats) + weight * linear


def randomise(trainer, seed=0):
    """Every trainable tensor away from its init (FiLM's start at 1 and 0); returns copies by our names."""
    g = torch.Generator().manual_seed(seed)
    params = {}
    with torch.no_grad():
        for module in (trainer.model.prompt_learner, trainer.model.head):
            for name, p in module.named_parameters():
                p.copy_(p + torch.randn(p.shape, generator=g) * 0.2)
                params[name] = p.detach().clone().requires_grad_()
    return params


def test_dept_matches_upstream(data_root, tiny_clip_path, tmp_path):
    trainer = build(data_root, tiny_clip_path, tmp_path / "out")
    params = randomise(trainer)
    classnames = trainer.dm.dataset.classnames
    reference = load_clip(tiny_clip_path).float()
    g = torch.Generator().manual_seed(1)
    batch = {"img": torch.randn(4, 3, 32, 32, generator=g), "label": torch.tensor([0, 1, 3, 4])}

    trainer.head_classnames = list(classnames)  # as training on these classes leaves it
    trainer.before_test()
    logits = trainer.model_inference(batch["img"])
    trainer.after_test()
    ref_logits = upstream_base_logits(reference, params, batch["img"], classnames, 0.7)
    assert (logits - ref_logits).abs().max() <= TOL

    ref_loss = upstream_loss(reference, params, batch["img"], batch["label"], classnames, 0.7)
    ref_grads = dict(zip(params, torch.autograd.grad(ref_loss, list(params.values()))))
    summary = trainer.forward_backward(batch)
    assert summary["loss"] == pytest.approx(ref_loss.item(), abs=TOL)
    ours = {**dict(trainer.model.prompt_learner.named_parameters()), **dict(trainer.model.head.named_parameters())}
    assert set(ours) == set(ref_grads)
    for name, grad in ref_grads.items():
        assert grad.abs().sum() > 0, name
        assert (ours[name].grad - grad).abs().max() <= TOL, name


def test_the_head_trains_at_its_own_learning_rate(data_root, tiny_clip_path, tmp_path, capsys):
    trainer = build(data_root, tiny_clip_path, tmp_path / "out")
    rates = {name: trainer._optims[name].param_groups[0]["initial_lr"] for name in ("prompt_learner", "head")}
    assert rates["prompt_learner"] == pytest.approx(0.0035)
    assert rates["head"] == pytest.approx(0.0035 * 6.5)
    assert "Learning rate of head: 0.02275 (OPTIM.LR x 6.5)" in capsys.readouterr().out


def test_base_to_new_fuses_only_on_the_trained_classes(data_root, tiny_clip_path, tmp_path):
    base = tmp_path / "base"
    train.cli(cli_args(data_root, tiny_clip_path, base))
    assert "the head (0.7) is fused with CoOp's logits" in (base / "log.txt").read_text()
    saved = torch.load(base / "head" / "model.pth.tar-2", map_location="cpu", weights_only=True)
    assert saved["state_dict"]["classifier.weight"].shape[0] == 5 and len(saved["head_classnames"]) == 5

    # The base classes again: the head is loaded and fused, as after training.
    again = build(data_root, tiny_clip_path, tmp_path / "again")
    again.load_model(str(base), epoch=2)
    assert again.head_applies
    assert torch.equal(again.model.head.classifier.weight, saved["state_dict"]["classifier.weight"])

    # The new classes: the classifier over the base classes is neither loaded nor used.
    new = build(data_root, tiny_clip_path, tmp_path / "new", subsample="new")
    initial = new.model.head.classifier.weight.detach().clone()
    new.load_model(str(base), epoch=2)
    assert not new.head_applies
    assert torch.equal(new.model.head.classifier.weight, initial)
    image = torch.randn(3, 3, 32, 32)
    new.before_test()
    logits = new.model_inference(image)
    coop_logits = new.model.logits(new.model.encode_image(image), new._eval_text_features)
    new.after_test()
    assert torch.equal(logits, coop_logits)

    out = tmp_path / "new_run"
    train.cli(["--eval-only", "--model-dir", str(base), "--load-epoch", "2",
               *cli_args(data_root, tiny_clip_path, out, subsample="new")])
    log = (out / "log.txt").read_text()
    assert "CoOp's logits alone" in log and "=> result" in log


def test_upstream_spellings_and_their_conflicts(data_root, tiny_clip_path, tmp_path):
    trainer = build(data_root, tiny_clip_path, tmp_path / "a", "TRAINER.COOP.CLASS_TOKEN_POSITION", "middle")
    assert trainer.method_cfg is trainer.cfg.TRAINER.DEPT
    assert trainer.method_cfg.CLASS_TOKEN_POSITION == "middle"
    with pytest.raises(ValueError, match=r"TRAINER\.COOP\.N_CTX=8 and TRAINER\.DEPT\.N_CTX=4"):
        build(data_root, tiny_clip_path, tmp_path / "b", "TRAINER.COOP.N_CTX", "8")


@pytest.mark.parametrize("opts, message", [
    (("TRAINER.DEPT.HEAD_WEIGHT", "1.5"), r"TRAINER\.DEPT\.HEAD_WEIGHT=1\.5"),
    (("TRAINER.DEPT.HEAD_LR_MULT", "0.0"), r"TRAINER\.DEPT\.HEAD_LR_MULT=0\.0"),
])
def test_bad_settings_name_the_key(opts, message, data_root, tiny_clip_path, tmp_path):
    with pytest.raises(ValueError, match=message):
        build(data_root, tiny_clip_path, tmp_path / "out", *opts)


def test_a_checkpoint_without_head_classes_is_refused(data_root, tiny_clip_path, tmp_path):
    trainer = build(data_root, tiny_clip_path, tmp_path / "out")
    with pytest.raises(KeyError, match="head_classnames"):
        trainer.before_load_state_dict("head", {"epoch": 2})


def test_a_multiplier_for_no_trainable_module_is_refused(data_root, tiny_clip_path, tmp_path, monkeypatch):
    from trainers.dept import DePT

    monkeypatch.setattr(DePT, "lr_multipliers", lambda self: {"heads": 2.0})
    with pytest.raises(KeyError, match=r"lr_multipliers\(\) names \['heads'\]"):
        build(data_root, tiny_clip_path, tmp_path / "out")
