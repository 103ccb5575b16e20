"""The contract a forking researcher builds on: three trainers written here, against the
public API only (the ones DEVELOPING.md shows), each trained, saved and reloaded.

1. the minimal CoOp-like trainer;
2. a deep-prompt trainer with prompts inside both towers (an IVLP-like learner);
3. a gradient-surgery trainer: named losses, and ``after_backward`` projecting the
   gradient against an auxiliary one (ProGrad-like).
"""
from __future__ import annotations

import os.path as osp
import re

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import train
from dassl.engine import TRAINER_REGISTRY, build_trainer
from dassl.metrics import compute_accuracy
from dassl.utils import set_random_seed
from tests.utils.fabricate import make_eurosat_tree
from tests.utils.tiny_clip import make_tiny_clip
from trainers.common.model import PromptCLIP
from trainers.common.prompt_learner import PromptLearner
from trainers.common.trainer import PromptTrainer
from trainers.config import prompt_config_node, register_config

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


# ----------------------------------------------------------------- 1. minimal
@register_config
def contract_config(cfg):
    cfg.TRAINER.MINIMAL = prompt_config_node(n_ctx=4, ctx_init="a photo of a")
    cfg.TRAINER.DEEPVL = prompt_config_node(n_ctx=2, ctx_init="a photo of a")
    cfg.TRAINER.DEEPVL.DEPTH = 2
    cfg.TRAINER.SURGERY = prompt_config_node(n_ctx=4, ctx_init="a photo of a")


@TRAINER_REGISTRY.register()
class ContractMinimal(PromptTrainer):
    CFG_NODE = "MINIMAL"

    def build_custom_model(self, cfg, classnames, clip_model):
        return PromptCLIP(clip_model, self.build_prompt_learner(classnames, clip_model))

    def compute_loss(self, image, label):
        logits = self.model.logits(self.model.encode_image(image), self.model.text_features())
        return F.cross_entropy(logits, label)


# ------------------------------------------------------------- 2. deep prompts
class DeepVLLearner(PromptLearner):
    """Text ctx + per-block text prompts, and visual prompts in the first ``depth`` image blocks."""

    prompts_image_tower = True

    def __init__(self, classnames, clip_model, depth: int = 2, **kwargs):
        super().__init__(classnames, clip_model, keep_n_ctx=True, **kwargs)
        text_w, vis_w = self.ctx.shape[-1], clip_model.visual.conv1.out_channels
        self.text_deep = nn.ParameterList(nn.Parameter(torch.randn(self.n_ctx, text_w) * 0.02) for _ in range(depth - 1))
        self.visual = nn.Parameter(torch.randn(self.n_ctx, vis_w) * 0.02)
        self.visual_deep = nn.ParameterList(nn.Parameter(torch.randn(self.n_ctx, vis_w) * 0.02) for _ in range(depth - 1))

    def text_deep_prompts(self):
        return [None, *self.text_deep]

    def visual_prompts(self):
        return self.visual

    def visual_deep_prompts(self):
        return [None, *self.visual_deep]


@TRAINER_REGISTRY.register()
class ContractDeepVL(PromptTrainer):
    CFG_NODE = "DEEPVL"
    PROMPT_LEARNER = DeepVLLearner

    def build_custom_model(self, cfg, classnames, clip_model):
        return PromptCLIP(clip_model, self.build_prompt_learner(classnames, clip_model, depth=self.method_cfg.DEPTH))


# ---------------------------------------------------------- 3. gradient surgery
@TRAINER_REGISTRY.register()
class ContractSurgery(PromptTrainer):
    """CE is optimised; a distillation loss towards zero-shot logits only steers the
    gradient: where the two gradients conflict, CE's loses its component along the other."""

    CFG_NODE = "SURGERY"

    def build_custom_model(self, cfg, classnames, clip_model):
        model = PromptCLIP(clip_model, self.build_prompt_learner(classnames, clip_model))
        with torch.no_grad():
            model.register_buffer("zs_text", model.text_features().detach().clone(), persistent=False)
        return model

    def compute_loss(self, image, label):
        image_features = self.model.encode_image(image)
        logits = self.model.logits(image_features, self.model.text_features())
        teacher = self.model.logits(image_features, self.model.zs_text)
        kd = F.kl_div(F.log_softmax(logits, -1), F.softmax(teacher, -1), reduction="batchmean")
        (self.kd_grad,) = torch.autograd.grad(kd, self.model.prompt_learner.ctx, retain_graph=True)
        return {"loss_ce": F.cross_entropy(logits, label)}, {"loss_kd": kd, "acc": compute_accuracy(logits, label)[0]}

    def after_backward(self):
        ctx = self.model.prompt_learner.ctx
        g, d = ctx.grad, self.kd_grad
        if (g * d).sum() < 0:
            ctx.grad = g - (g * d).sum() / d.square().sum() * d


# ------------------------------------------------------------------ the tests
@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> str:
    return make_eurosat_tree(tmp_path_factory.mktemp("data"), n_per_class=6)


@pytest.fixture(scope="module")
def clip_path(tmp_path_factory) -> str:
    return str(make_tiny_clip(tmp_path_factory.mktemp("clip") / "tiny.pt", vision_layers=2, text_layers=2))


NODES = {"ContractMinimal": "MINIMAL", "ContractDeepVL": "DEEPVL", "ContractSurgery": "SURGERY"}


def args(name, data_root, clip_path, out, *extra):
    return [
        "--root", data_root, "--seed", "1", "--trainer", name, "--output-dir", str(out),
        "--dataset-config-file", osp.join(REPO, "configs/datasets/eurosat.yaml"), *extra,
        "MODEL.BACKBONE.NAME", clip_path, "INPUT.SIZE", "(32, 32)", "OPTIM.NAME", "sgd", "OPTIM.LR", "0.01",
        "OPTIM.MAX_EPOCH", "2", "DATALOADER.NUM_WORKERS", "0", "DATALOADER.TRAIN_X.BATCH_SIZE", "4",
        "DATALOADER.TEST.BATCH_SIZE", "4", "DATASET.NUM_SHOTS", "2", "DATASET.SUBSAMPLE_CLASSES", "base",
        "DATASET.CACHE_DIR", str(out) + "_cache", f"TRAINER.{NODES[name]}.PREC", "fp32",
    ]


def final_accuracy(log_dir) -> float:
    with open(osp.join(log_dir, "log.txt")) as f:
        return float(re.findall(r"\* accuracy: ([\d.]+)%", f.read())[-1])


@pytest.mark.parametrize("name", list(NODES))
def test_trains_saves_and_reloads(name, data_root, clip_path, tmp_path):
    train_dir, eval_dir = tmp_path / "train", tmp_path / "eval"
    train.cli(args(name, data_root, clip_path, train_dir))
    saved = torch.load(train_dir / "prompt_learner" / "model.pth.tar-2", map_location="cpu", weights_only=True)
    train.cli(args(name, data_root, clip_path, eval_dir, "--eval-only", "--model-dir", str(train_dir), "--load-epoch", "2"))
    assert final_accuracy(eval_dir) == final_accuracy(train_dir)  # the same model, reloaded

    trainer = build(name, data_root, clip_path, tmp_path / "fresh")
    fresh = {k: v.clone() for k, v in trainer.model.prompt_learner.state_dict().items()}
    trainer.load_model(str(train_dir), epoch=2)
    loaded = trainer.model.prompt_learner.state_dict()
    assert set(saved["state_dict"]) == set(loaded)
    for key, value in saved["state_dict"].items():
        assert torch.equal(loaded[key], value) and not torch.equal(fresh[key], value), key


def build(name, data_root, clip_path, out):
    parsed = train.build_parser().parse_args(args(name, data_root, clip_path, out))
    train.register_components()
    cfg = train.setup_cfg(parsed)
    set_random_seed(cfg.SEED)
    return build_trainer(cfg)


def test_deep_prompts_reach_both_towers_and_train(data_root, clip_path, tmp_path):
    trainer = build("ContractDeepVL", data_root, clip_path, tmp_path)
    assert not trainer.image_encoder_is_frozen
    params = dict(trainer.model.prompt_learner.named_parameters())
    assert set(params) == {"ctx", "text_deep.0", "visual", "visual_deep.0"}
    trainer.forward_backward(next(iter(trainer.train_loader_x)))
    for key, p in params.items():
        assert p.grad is not None and p.grad.abs().sum() > 0, key


def test_surgery_logs_named_losses_and_steps_with_the_hooked_gradient(data_root, clip_path, tmp_path):
    trainer = build("ContractSurgery", data_root, clip_path, tmp_path)
    batch = next(iter(trainer.train_loader_x))
    image, label = trainer.parse_batch_train(batch)
    ctx = trainer.model.prompt_learner.ctx
    image_features = trainer.model.encode_image(image)
    logits = trainer.model.logits(image_features, trainer.model.text_features())
    teacher = trainer.model.logits(image_features, trainer.model.zs_text)
    kd = F.kl_div(F.log_softmax(logits, -1), F.softmax(teacher, -1), reduction="batchmean")
    (g_kd,) = torch.autograd.grad(kd, ctx, retain_graph=True)
    (g_ce,) = torch.autograd.grad(F.cross_entropy(logits, label), ctx)
    dot = (g_ce * g_kd).sum()
    expected = g_ce - dot / g_kd.square().sum() * g_kd if dot < 0 else g_ce

    before = ctx.detach().clone()
    summary = trainer.forward_backward(batch)
    assert list(summary) == ["loss", "loss_kd", "acc"]  # one named loss: its total is "loss"
    assert summary["loss"] == pytest.approx(F.cross_entropy(logits, label).item(), rel=1e-6)
    assert summary["loss_kd"] == pytest.approx(kd.item(), rel=1e-5)  # logged, not optimised
    assert torch.allclose(ctx.grad, expected, atol=1e-6)
    # The optimizer stepped with the gradient as after_backward left it (SGD, fresh momentum).
    lr, wd = trainer.get_current_lr(), trainer.cfg.OPTIM.WEIGHT_DECAY
    assert torch.allclose(ctx.detach(), before - lr * (ctx.grad + wd * before), atol=1e-7)


def test_surgery_hook_projects_a_conflicting_gradient(data_root, clip_path, tmp_path):
    trainer = build("ContractSurgery", data_root, clip_path, tmp_path)
    ctx = trainer.model.prompt_learner.ctx
    g = torch.zeros_like(ctx)
    g[0, 0], g[0, 1] = 1.0, 1.0
    trainer.kd_grad = torch.zeros_like(ctx)
    trainer.kd_grad[0, 0] = -2.0  # conflicts with g: the component along it goes
    ctx.grad = g.clone()
    trainer.after_backward()
    assert ctx.grad[0, 0] == 0 and ctx.grad[0, 1] == 1.0


def test_a_trainer_without_cfg_node_is_refused(data_root, clip_path, tmp_path):
    class NoNode(ContractMinimal):
        CFG_NODE = None

    parsed = train.build_parser().parse_args(args("ContractMinimal", data_root, clip_path, tmp_path))
    train.register_components()
    cfg = train.setup_cfg(parsed)
    with pytest.raises(TypeError, match="must set the class attribute CFG_NODE"):
        NoNode(cfg)
