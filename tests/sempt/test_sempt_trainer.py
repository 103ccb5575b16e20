"""SemPT end to end on a tiny random CLIP and a fabricated EuroSAT tree."""
from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from dassl.engine import build_trainer

from .conftest import EUROSAT_CLASSES


def _set_seed():
    from dassl.utils import set_random_seed

    set_random_seed(1)


def _build(cfg):
    _set_seed()
    return build_trainer(cfg)


def test_training_reduces_the_loss_and_records_seen_classes(make_cfg, capsys):
    cfg = make_cfg(epochs=6, **{"OPTIM.LR": 0.2})
    trainer = _build(cfg)
    losses = []
    original = trainer.forward_backward

    def recording(batch):
        summary = original(batch)
        losses.append(summary["loss"])
        return summary

    trainer.forward_backward = recording
    trainer.train()
    assert len(losses) >= 6
    first, last = sum(losses[:2]) / 2, sum(losses[-2:]) / 2
    assert last < first, losses

    ckpt_path = f"{cfg.OUTPUT_DIR}/prompt_learner/model.pth.tar-6"
    checkpoint = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    assert checkpoint["seen_classnames"] == [c.lower() for c in EUROSAT_CLASSES[:5]]
    out = capsys.readouterr().out
    assert "SemPT inference (auto): 5 class(es) use label embeddings" in out


def test_eval_only_on_new_classes_uses_the_attribute_branch(make_cfg, capsys):
    train_cfg = make_cfg(epochs=1)
    _build(train_cfg).train()
    test_cfg = make_cfg(subsample="new", output="test_new")
    trainer = _build(test_cfg)
    trainer.load_model(train_cfg.OUTPUT_DIR, epoch=1)
    capsys.readouterr()
    trainer.test()
    out = capsys.readouterr().out
    assert "0 class(es) use label embeddings (seen in training), 5 use attribute-enhanced" in out
    assert "=> result" in out and "Mean attribute weights on the true class (visual)" in out


def test_auto_mixes_branches_in_one_softmax(make_cfg):
    """Train on the base classes, evaluate on all 10: seen -> label logits, unseen -> attribute logits."""
    train_cfg = make_cfg(epochs=1)
    _build(train_cfg).train()
    trainer = _build(make_cfg(subsample="all", output="all"))
    trainer.load_model(train_cfg.OUTPUT_DIR, epoch=1)
    seen = trainer.seen_mask()
    assert seen.tolist() == [True] * 5 + [False] * 5

    image = next(iter(trainer.test_loader))["img"][:4]
    trainer.set_model_mode("eval")
    trainer.before_test()
    with torch.no_grad():
        mixed = trainer.model_inference(image)
        label_features, desc, gram = trainer._eval_text_features
        f = trainer.model.encode_image(image)
        label_logits = trainer.model.logits(f, label_features)
        attr_logits = trainer._attribute_logits(f, label_features, desc, gram)
    trainer.after_test()
    assert mixed.shape == (4, 10)
    assert torch.allclose(mixed[:, :5], label_logits[:, :5], atol=1e-5)
    assert torch.allclose(mixed[:, 5:], attr_logits[:, 5:], atol=1e-5)
    assert not torch.allclose(label_logits[:, 5:], attr_logits[:, 5:], atol=1e-3)


def test_label_only_equals_coop_for_the_same_context(make_cfg):
    sempt = _build(make_cfg(**{"TRAINER.SEMPT.ATTR_LOSS_WEIGHT": 0.0, "TRAINER.SEMPT.INFERENCE": "label"}))
    coop = _build(make_cfg(trainer="CoOp", **{"TRAINER.COOP.N_CTX": 4, "TRAINER.COOP.CTX_INIT": "a photo of a"}))
    with torch.no_grad():
        coop.model.prompt_learner.ctx.copy_(sempt.model.prompt_learner.ctx + 0.01)
        sempt.model.prompt_learner.ctx.copy_(coop.model.prompt_learner.ctx)
    image = next(iter(sempt.test_loader))["img"][:6]
    for t in (sempt, coop):
        t.set_model_mode("eval")
        t.before_test()
    with torch.no_grad():
        a, b = sempt.model_inference(image), coop.model_inference(image)
    assert a.shape == b.shape == (6, 5)
    assert (a - b).abs().max() < 1e-5


def test_uniform_weighting_is_the_mean_description(make_cfg):
    trainer = _build(make_cfg(**{"TRAINER.SEMPT.WEIGHTING": "uniform"}))
    image = next(iter(trainer.test_loader))["img"][:3]
    with torch.no_grad():
        f = trainer.model.encode_image(image)
        t = trainer.model.text_features()
        desc, gram = trainer.model.description_features()
        logits = trainer._attribute_logits(f, t, desc, gram)
        expected = trainer.model.logit_scale.exp() * f @ F.normalize(t + desc.mean(1), dim=-1).t()
    assert (logits - expected).abs().max() < 1e-4


def test_description_cache_hit_and_invalidation(make_cfg, tmp_path, attribute_file, capsys):
    _build(make_cfg())
    first = capsys.readouterr().out
    assert "Encoding 20 description sentence(s) (0 cached)" in first  # 5 base classes x 4 attributes
    _build(make_cfg())
    assert "All 20 description sentences found in the cache" in capsys.readouterr().out

    data = json.loads(attribute_file.read_text())
    data["classes"][0]["descriptions"]["colour"] = ["Annual Crop Land is a green and brown patchwork."]
    attribute_file.write_text(json.dumps(data))
    trainer = _build(make_cfg())
    assert "Encoding 1 description sentence(s) (19 cached)" in capsys.readouterr().out

    # The cached embedding equals a fresh encoding of the same sentence.
    with torch.no_grad():
        fresh = F.normalize(trainer.model.text_encoder.encode_text(["Annual Crop Land is a green and brown patchwork."]), dim=-1)
    assert (trainer.model.desc_embeddings[0, 0] - fresh[0]).abs().max() < 1e-5


def test_prompted_descriptions_train_and_match_frozen_shape(make_cfg):
    trainer = _build(make_cfg(epochs=1, **{"TRAINER.SEMPT.DESC_ENCODER": "prompted", "TRAINER.SEMPT.PROMPTED_CHUNK": 7}))
    desc, gram = trainer.model.description_features()
    assert desc.shape == (5, 4, trainer.model.text_encoder.text_projection.shape[1])
    assert desc.requires_grad
    before = trainer.model.prompt_learner.ctx.detach().clone()
    trainer.train()
    assert not torch.equal(before, trainer.model.prompt_learner.ctx.detach())


def test_prompted_chunks_are_exact(make_cfg):
    """Chunked, checkpointed encoding equals one plain pass (values and gradients)."""
    trainer = _build(make_cfg(**{"TRAINER.SEMPT.DESC_ENCODER": "prompted", "TRAINER.SEMPT.PROMPTED_CHUNK": 3}))
    model = trainer.model
    ctx = model.prompt_learner.ctx
    chunked = model.description_prompts(model.text_encoder, ctx)
    grad_chunked = torch.autograd.grad(chunked.sum(), ctx)[0]
    model.description_prompts.chunk = 10_000
    plain = model.description_prompts(model.text_encoder, ctx)
    grad_plain = torch.autograd.grad(plain.sum(), ctx)[0]
    assert (chunked - plain).abs().max() < 1e-5
    assert torch.allclose(grad_chunked, grad_plain, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d["classes"].pop(1), r'no entry for class 1: "Forest"'),
        (lambda d: d["classes"][2]["descriptions"].pop("texture"), r'attribute "texture" is missing'),
        (lambda d: d["classes"][3]["descriptions"].update(lines=[""]), r'"lines" has an empty sentence'),
    ],
)
def test_bad_attribute_files_fail_clearly(make_cfg, attribute_file, mutate, message):
    data = json.loads(attribute_file.read_text())
    mutate(data)
    attribute_file.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=message):
        _build(make_cfg())


def test_missing_attribute_file_names_the_key(make_cfg, tmp_path):
    with pytest.raises(ValueError, match="TRAINER.SEMPT.ATTRIBUTE_FILE"):
        _build(make_cfg(**{"TRAINER.SEMPT.ATTRIBUTE_FILE": str(tmp_path / "nope.json")}))


BRANCH_OPTS = {
    "maple": {"TRAINER.SEMPT.LABEL_BRANCH": "maple", "TRAINER.MAPLE.PROMPT_DEPTH": 1, "TRAINER.MAPLE.PREC": "fp32"},
    "promptsrc": {"TRAINER.SEMPT.LABEL_BRANCH": "promptsrc", "TRAINER.PROMPTSRC.PROMPT_DEPTH_TEXT": 2,
                  "TRAINER.PROMPTSRC.PROMPT_DEPTH_VISION": 1, "TRAINER.PROMPTSRC.GPA_MEAN": 2,
                  "TRAINER.PROMPTSRC.GPA_STD": 1, "TRAINER.PROMPTSRC.PREC": "fp32"},
}
BASELINE = {"maple": "MaPLe", "promptsrc": "PromptSRC"}


@pytest.mark.parametrize("branch", sorted(BRANCH_OPTS))
def test_without_the_attribute_loss_a_deep_branch_is_its_baseline(make_cfg, branch):
    """LABEL_BRANCH maple/promptsrc with ATTR_LOSS_WEIGHT 0 and INFERENCE label: the baseline's
    loss (PromptSRC's regularisers included), gradients and logits, for the same prompts."""
    sempt = _build(make_cfg(**BRANCH_OPTS[branch], **{"TRAINER.SEMPT.ATTR_LOSS_WEIGHT": 0.0,
                                                      "TRAINER.SEMPT.INFERENCE": "label"}))
    base = _build(make_cfg(trainer=BASELINE[branch], output="baseline", **BRANCH_OPTS[branch]))
    sempt.model.prompt_learner.load_state_dict(base.model.prompt_learner.state_dict())
    batch = next(iter(base.train_loader_x))
    ours, theirs = sempt.forward_backward(batch), base.forward_backward(batch)
    assert ours["loss"] == pytest.approx(theirs["loss"], rel=1e-6)
    for (name, p), q in zip(sempt.model.prompt_learner.named_parameters(), base.model.prompt_learner.parameters()):
        assert torch.allclose(p.grad, q.grad, atol=1e-6), name
    if branch == "promptsrc":
        assert {"loss_scl_text", "loss_scl_image", "loss_scl_logits"} <= set(ours)
    images = batch["img"]
    for trainer in (sempt, base):
        trainer.set_model_mode("eval")
        trainer.before_test()
    assert torch.allclose(sempt.model_inference(images), base.model_inference(images), atol=1e-5)


@pytest.mark.parametrize("branch", sorted(BRANCH_OPTS))
def test_deep_label_branches_train_save_and_transfer_to_new_classes(make_cfg, branch, capsys):
    train_cfg = make_cfg(**BRANCH_OPTS[branch])
    trainer = _build(train_cfg)
    assert not trainer.image_encoder_is_frozen  # the branch's prompts reach the image tower
    trainer.train()
    checkpoint = torch.load(f"{train_cfg.OUTPUT_DIR}/prompt_learner/model.pth.tar-2", map_location="cpu",
                            weights_only=True)
    assert set(checkpoint["state_dict"]) == set(trainer.model.prompt_learner.state_dict())
    assert ("gpa_sum" in checkpoint) == (branch == "promptsrc")
    test = _build(make_cfg(subsample="new", output="test_new", **BRANCH_OPTS[branch]))
    test.load_model(train_cfg.OUTPUT_DIR, epoch=2)
    capsys.readouterr()
    test.test()
    out = capsys.readouterr().out
    assert "5 use attribute-enhanced" in out and "=> result" in out


def test_prompted_descriptions_need_the_coop_branch(make_cfg):
    with pytest.raises(ValueError, match="only the coop branch has"):
        _build(make_cfg(**BRANCH_OPTS["maple"], **{"TRAINER.SEMPT.DESC_ENCODER": "prompted"}))
