"""TCP against an independent reference written like upstream's code
(htyao89/Textual-based_Class-aware_prompt_tuning ``trainers/tcp.py``: ``PromptLearner``,
``CustomCLIP.forward``; ``trainers/clip_text/model.py``: ``ResidualAttentionBlock_MaPLe``),
with its fp16 casts removed: full 77-token sequences through CLIP's own blocks, the class
tokens mixed in before block ``INSERT_LAYER``, the loss as upstream sums it. Eval logits,
the training loss and every trainable parameter's gradient must agree within 1e-5.
"""
from __future__ import annotations

import os.path as osp
from typing import Dict

import pytest
import torch
import torch.nn.functional as F

import train
from dassl.engine import build_trainer
from dassl.utils import set_random_seed
from tests.utils.fabricate import make_eurosat_tree
from tests.utils.tiny_clip import make_tiny_clip
from trainers import tcp as tcp_module
from trainers.common import model as model_module
from trainers.common.clip_loader import load_clip
from trainers.common.openai_clip import clip

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TEXT_BLOCKS = 3
INSERT_LAYER = 2

# Upstream's two template tables (trainers/tcp.py CUSTOM_TEMPLATES, CUSTOM_TEMPLATES_ori),
# for the datasets these tests impersonate.
UPSTREAM_PROMPT = {
    "EuroSAT": "X X X X {}.",
    "OxfordPets": "X X X X {}, a type of pet.",
    "UCF101": "a photo of a person doing {}.",
}
UPSTREAM_KNOWLEDGE = {
    "EuroSAT": "a centered satellite photo of {}.",
    "OxfordPets": "a photo of a {}, a type of pet.",
    "UCF101": "a photo of a person doing {}.",
}


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> str:
    return make_eurosat_tree(tmp_path_factory.mktemp("data"), n_per_class=6)


@pytest.fixture(scope="module")
def clip_path(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("clip") / "tiny_tcp.pt"
    return str(make_tiny_clip(path, image_resolution=32, text_layers=TEXT_BLOCKS))


def args(data_root, clip_path, out, subsample="base", flags=(), opts=()):
    """train.py arguments: the shipped base-to-novel config shrunk to the tiny CLIP, then ``opts``."""
    return [
        "--root", data_root, "--seed", "1", "--trainer", "TCP", "--output-dir", str(out),
        "--dataset-config-file", osp.join(REPO, "configs/datasets/eurosat.yaml"),
        "--config-file", osp.join(REPO, "configs/trainers/TCP/vit_b16_ep100_ctxv1.yaml"),
        *flags,
        "MODEL.BACKBONE.NAME", clip_path, "INPUT.SIZE", "(32, 32)", "OPTIM.MAX_EPOCH", "2",
        "DATALOADER.NUM_WORKERS", "0", "DATALOADER.TRAIN_X.BATCH_SIZE", "4", "DATALOADER.TEST.BATCH_SIZE", "4",
        "DATASET.NUM_SHOTS", "2", "DATASET.SUBSAMPLE_CLASSES", subsample, "DATASET.CACHE_DIR", str(out) + "_cache",
        "TRAINER.TCP.PREC", "fp32", "TRAINER.TCP.INSERT_LAYER", str(INSERT_LAYER), *opts,
    ]


def build(data_root, clip_path, out, *opts, subsample="base"):
    parsed = train.build_parser().parse_args(args(data_root, clip_path, out, subsample, opts=opts))
    train.register_components()
    cfg = train.setup_cfg(parsed)
    set_random_seed(cfg.SEED)
    return build_trainer(cfg)


# ------------------------------------------------------------- the reference
def quick_gelu(x: torch.Tensor) -> torch.Tensor:
    return x * torch.sigmoid(1.702 * x)


def upstream_tcp(clip_model, classnames, dataset, params: Dict[str, torch.Tensor], weight, images, labels):
    """Upstream TCP's forward in training mode (logits, loss), fp32, written from its source."""
    names = [name.replace("_", " ") for name in classnames]
    n_cls = len(names)
    # PromptLearner.__init__: zero-shot features of the hand-crafted template, normalised.
    with torch.no_grad():
        zs = clip_model.encode_text(clip.tokenize([UPSTREAM_KNOWLEDGE[dataset].format(n) for n in names]))
        text_features = zs / zs.norm(dim=-1, keepdim=True)
    ctx = params["ctx"]
    n_ctx = ctx.shape[-2]
    tokenized = torch.cat([clip.tokenize(UPSTREAM_PROMPT[dataset].format(n)) for n in names])
    with torch.no_grad():
        embedding = clip_model.token_embedding(tokenized)
    prefix, suffix = embedding[:, :1, :], embedding[:, 1 + n_ctx:, :]

    # PromptLearner.forward
    hidden = quick_gelu(F.linear(text_features, params["meta_net.linear1.weight"], params["meta_net.linear1.bias"]))
    class_feature = F.linear(hidden, params["meta_net.linear2.weight"], params["meta_net.linear2.bias"])
    width = clip_model.ln_final.weight.shape[0]
    class_feature = class_feature.reshape(class_feature.shape[0], -1, width)
    ctx = ctx.unsqueeze(0).expand(n_cls, -1, -1) if ctx.dim() == 2 else ctx
    prompts = torch.cat([prefix, ctx, suffix], dim=1)

    # TextEncoder.forward with the list-input blocks of clip_text/model.py
    x = (prompts + clip_model.positional_embedding).permute(1, 0, 2)
    for counter, block in enumerate(clip_model.transformer.resblocks):
        if counter == INSERT_LAYER:
            textual_context = class_feature.permute(1, 0, 2)
            k = textual_context.shape[0]
            midfix = x[1:1 + k]
            x = torch.cat([x[:1], weight * textual_context + (1 - weight) * midfix, x[1 + k:]], dim=0)
        x = block(x)  # its own 77 x 77 causal mask
    x = clip_model.ln_final(x.permute(1, 0, 2))
    text = x[torch.arange(x.shape[0]), tokenized.argmax(dim=-1)] @ clip_model.text_projection

    # CustomCLIP.forward
    image_features = clip_model.visual(images)
    image_features = image_features / image_features.norm(dim=-1, keepdim=True)
    text_norm = text / text.norm(dim=-1, keepdim=True)
    logits = clip_model.logit_scale.exp().detach() * image_features.detach() @ text_norm.t()
    old = text_features / text_features.norm(dim=-1, keepdim=True)
    score = 1.0 - torch.mean(torch.nn.CosineSimilarity(dim=1, eps=1e-07)(text_norm, old))
    loss = F.cross_entropy(logits, labels) + 8.0 * score
    return logits, loss


CASES = {
    "eurosat": ("EuroSAT", []),
    "pets_template": ("OxfordPets", []),
    # upstream spellings; W != 1 (upstream overwrites W with 1.0, we use it)
    "ucf_template_w07": ("UCF101", ["TRAINER.COOP.W", "0.7", "TRAINER.COOP.N_CTX", "4"]),
    "csc": ("EuroSAT", ["TRAINER.TCP.CSC", "True"]),
    "act_checkpoint_chunked": ("EuroSAT", ["MODEL.ACT_CHECKPOINT", "True", "TRAINER.TCP.W", "0.6"]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_logits_loss_and_gradients_match_upstream(case, data_root, clip_path, tmp_path, monkeypatch):
    dataset, opts = CASES[case]
    # Impersonate another dataset's wording on the EuroSAT images.
    monkeypatch.setitem(tcp_module.PROMPT_TEMPLATES, "EuroSAT", tcp_module.PROMPT_TEMPLATES[dataset])
    monkeypatch.setitem(tcp_module.KNOWLEDGE_TEMPLATES, "EuroSAT", tcp_module.KNOWLEDGE_TEMPLATES[dataset])
    monkeypatch.setattr(model_module, "CHECKPOINT_CHUNK_SIZE", 2)  # 5 classes: 3 chunks
    trainer = build(data_root, clip_path, tmp_path, *opts)
    learner = trainer.model.prompt_learner
    weight = learner.fusion_weight
    assert weight == {"ucf_template_w07": 0.7, "act_checkpoint_chunked": 0.6}.get(case, 1.0)
    assert trainer.model.activation_checkpointing == (case == "act_checkpoint_chunked")

    g = torch.Generator().manual_seed(0)
    with torch.no_grad():  # a trained-looking state: not the init
        for p in learner.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)
    params = {name: p.detach().clone().requires_grad_(True) for name, p in learner.named_parameters()}
    assert set(params) == {"ctx", "meta_net.linear1.weight", "meta_net.linear1.bias",
                           "meta_net.linear2.weight", "meta_net.linear2.bias"}
    images = torch.randn(6, 3, 32, 32, generator=g)
    labels = torch.tensor([0, 1, 2, 3, 4, 1])

    reference_clip = load_clip(clip_path).float()
    ref_logits, ref_loss = upstream_tcp(reference_clip, trainer.dm.dataset.classnames, dataset, params,
                                        weight, images, labels)
    ref_grads = dict(zip(params, torch.autograd.grad(ref_loss, list(params.values()))))

    trainer.set_model_mode("eval")
    trainer.before_test()
    with torch.no_grad():
        logits = trainer.model_inference(images)
    trainer.after_test()
    assert torch.allclose(logits, ref_logits, atol=1e-5), (logits - ref_logits).abs().max()

    trainer.set_model_mode("train")
    summary = trainer.forward_backward({"img": images, "label": labels})
    assert summary["loss"] == pytest.approx(ref_loss.item(), abs=1e-5)
    for name, p in learner.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
        assert torch.allclose(p.grad, ref_grads[name], atol=1e-5), (name, (p.grad - ref_grads[name]).abs().max())
        assert not torch.equal(p.detach(), params[name].detach()), name  # the optimizer stepped


def test_the_reference_sees_the_class_tokens(data_root, clip_path, tmp_path):
    """The comparison above can fail: without the class tokens the features differ."""
    trainer = build(data_root, clip_path, tmp_path)
    learner = trainer.model.prompt_learner
    params = {name: p.detach().clone() for name, p in learner.named_parameters()}
    images, labels = torch.randn(2, 3, 32, 32), torch.tensor([0, 1])
    reference_clip = load_clip(clip_path).float()
    with torch.no_grad():
        with_tokens, _ = upstream_tcp(reference_clip, trainer.dm.dataset.classnames, "EuroSAT", params, 1.0,
                                      images, labels)
        without, _ = upstream_tcp(reference_clip, trainer.dm.dataset.classnames, "EuroSAT", params, 0.0,
                                  images, labels)
    assert not torch.allclose(with_tokens, without, atol=1e-3)


# ----------------------------------------------------------- config and layout
def test_context_length_never_misaligns_the_template(data_root, clip_path, tmp_path, monkeypatch):
    monkeypatch.setitem(tcp_module.PROMPT_TEMPLATES, "EuroSAT", "{}, a type of pet.")
    trainer = build(data_root, clip_path, tmp_path, "TRAINER.TCP.N_CTX", "6")
    learner = trainer.model.prompt_learner
    assert learner.n_ctx == 6 and learner.class_tokens().shape[1:] == (6, learner.ctx.shape[-1])
    name = learner.classnames[0]
    expected = clip.tokenize(f"X X X X X X {name}, a type of pet.")[0, :learner.tokenized_prompts.shape[1]]
    assert torch.equal(learner.tokenized_prompts[0], expected)
    # After SOS and the 6 context vectors come the class name's tokens, then the template's words.
    reference = load_clip(clip_path).float().token_embedding(expected[None])[0]
    assert torch.allclose(learner()[0, 7:], reference[7:])


def test_upstream_spellings_are_honoured(data_root, clip_path, tmp_path, capsys):
    trainer = build(data_root, clip_path, tmp_path, "TRAINER.COOP.N_CTX", "2", "TRAINER.COOP.W", "0.5",
                    "TRAINER.COOP.CTX_INIT", "a photo")
    learner = trainer.model.prompt_learner
    assert learner.n_ctx == 2 and learner.fusion_weight == 0.5 and learner.prompt_prefix == "a photo"
    assert trainer.w == 8.0  # the loss weight, not upstream's (dead) W
    assert "TRAINER.COOP.W = 0.5 (upstream spelling) overrides TRAINER.TCP.W" in capsys.readouterr().out


def test_insert_layer_beyond_the_text_tower_is_a_clear_error(data_root, clip_path, tmp_path):
    with pytest.raises(ValueError, match=r"TRAINER.TCP.INSERT_LAYER=8, but .* blocks 0 \.\. 2"):
        build(data_root, clip_path, tmp_path, "TRAINER.TCP.INSERT_LAYER", "8")


def test_class_token_position_other_than_end_is_refused(data_root, clip_path, tmp_path):
    with pytest.raises(ValueError, match="CLASS_TOKEN_POSITION='middle'"):
        build(data_root, clip_path, tmp_path, "TRAINER.TCP.CLASS_TOKEN_POSITION", "middle")


def test_trains_on_base_and_evaluates_new_with_their_own_class_tokens(data_root, clip_path, tmp_path):
    train_dir, test_dir = tmp_path / "train_base", tmp_path / "test_new"
    train.cli(args(data_root, clip_path, train_dir))
    checkpoint = train_dir / "prompt_learner" / "model.pth.tar-2"
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    assert set(state) == {"ctx", "meta_net.linear1.weight", "meta_net.linear1.bias",
                          "meta_net.linear2.weight", "meta_net.linear2.bias"}  # no CLIP, no class buffers

    train.cli(args(data_root, clip_path, test_dir, "new",
                   flags=("--eval-only", "--model-dir", str(train_dir), "--load-epoch", "2")))
    log = (test_dir / "log.txt").read_text()
    assert f'Loading weights to prompt_learner from "{checkpoint}"' in log
    assert "=> result" in log and "* total: 10" in log  # 5 new classes x 2 test images

    new = build(data_root, clip_path, tmp_path / "new", subsample="new")
    new.load_model(str(train_dir), epoch=2)
    learner = new.model.prompt_learner
    # TKE reads the new classes' own zero-shot features ("a centered satellite photo of <new>.").
    reference_clip = load_clip(clip_path).float()
    with torch.no_grad():
        zs = reference_clip.encode_text(clip.tokenize([f"a centered satellite photo of {n}." for n in learner.classnames]))
    assert torch.allclose(learner.text_features, F.normalize(zs, dim=-1), atol=1e-5)
    assert torch.allclose(new.model.kg_text_features, learner.text_features)


def test_upstream_checkpoint_loads(data_root, clip_path, tmp_path):
    """A checkpoint as upstream writes it: fp16 tensors, the class buffers of another class set."""
    trainer = build(data_root, clip_path, tmp_path / "fresh")
    learner = trainer.model.prompt_learner
    g = torch.Generator().manual_seed(3)
    upstream = {name: (torch.randn(p.shape, generator=g) * 0.1).half() for name, p in learner.named_parameters()}
    width = learner.ctx.shape[-1]
    upstream["token_prefix"] = torch.randn(37, 1, width).half()
    upstream["token_suffix"] = torch.randn(37, 72, width).half()
    folder = tmp_path / "zoo" / "prompt_learner"
    folder.mkdir(parents=True)
    torch.save({"state_dict": upstream, "epoch": 50, "optimizer": {}, "scheduler": {}}, folder / "model.pth.tar-50")

    trainer.load_model(str(tmp_path / "zoo"), epoch=50)
    for name, p in learner.named_parameters():
        assert p.dtype == torch.float32 and torch.equal(p.detach(), upstream[name].float()), name
