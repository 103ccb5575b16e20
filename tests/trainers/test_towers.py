"""The two towers' seams, each against a plain computation on the full CLIP modules:
deep text prompts, chunked and checkpointed text encoding, visual prompts (shallow and
deep), the ResNet refusal, MaPLe's partial context init and per-row prompt composition."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tests.utils.tiny_clip import build_tiny_clip
from trainers.common.image_encoder import ImageEncoder
from trainers.common.openai_clip import clip
from trainers.common.prompt_learner import PromptLearner, bpe_length
from trainers.common.text_encoder import BlendedPrompt, TextEncoder

NAMES = ["dog", "hot air balloon", "tabby cat", "x"]


@pytest.fixture(scope="module")
def model():
    return build_tiny_clip(image_resolution=32, vision_layers=3, text_layers=3).float()


def reference_text(model, prompts, tokenized, deep):
    """CLIP's own text forward over all 77 positions, replacing positions 1..n before block i."""
    x = torch.cat([prompts, model.token_embedding(tokenized[:, prompts.shape[1]:])], dim=1)
    x = (x + model.positional_embedding).permute(1, 0, 2)
    for i, block in enumerate(model.transformer.resblocks):
        if deep is not None and i < len(deep) and deep[i] is not None:
            tokens = deep[i] if deep[i].dim() == 3 else deep[i].expand(x.shape[1], -1, -1)
            x = x.clone()
            x[1:1 + tokens.shape[1]] = tokens.permute(1, 0, 2)
        x = block(x)  # the block's own 77 x 77 causal mask
    x = model.ln_final(x.permute(1, 0, 2))
    return x[torch.arange(x.shape[0]), tokenized.argmax(-1)] @ model.text_projection


def padded_tokens(learner):
    return clip.tokenize([learner.prompt_text(n) for n in learner.classnames])


def test_deep_text_prompts_match_clip_on_all_positions(model):
    learner = PromptLearner(NAMES, model, n_ctx=4, ctx_init="a photo of a", verbose=False)
    g = torch.Generator().manual_seed(0)
    shared = torch.randn(4, 64, generator=g) * 0.1
    per_class = torch.randn(len(NAMES), 4, 64, generator=g) * 0.1
    deep = [None, shared, per_class]
    ours = TextEncoder(model)(learner(), learner.tokenized_prompts, deep)
    ref = reference_text(model, learner(), padded_tokens(learner), deep)
    assert torch.allclose(ours, ref, atol=1e-5)
    # And the entry matters: without it the features change.
    assert not torch.allclose(TextEncoder(model)(learner(), learner.tokenized_prompts), ref, atol=1e-3)


def test_callable_deep_prompt_sees_the_block_input(model):
    learner = PromptLearner(NAMES, model, n_ctx=4, ctx_init="a photo of a", verbose=False)
    tokens = torch.randn(len(NAMES), 4, 64) * 0.1
    as_tensor = TextEncoder(model)(learner(), learner.tokenized_prompts, [None, None, tokens])

    def mix(x):  # TCP-style weighted mix with weight 1: the same as replacing
        return torch.cat([x[:, :1], 1.0 * tokens + 0.0 * x[:, 1:5], x[:, 5:]], dim=1)

    as_callable = TextEncoder(model)(learner(), learner.tokenized_prompts, [None, None, mix])
    assert torch.allclose(as_tensor, as_callable, atol=1e-6)


def test_blended_deep_prompt_mixes_into_the_positions(model):
    learner = PromptLearner(NAMES, model, n_ctx=4, ctx_init="a photo of a", verbose=False)
    tokens = torch.randn(len(NAMES), 4, 64) * 0.1
    x = torch.cat([learner(), model.token_embedding(padded_tokens(learner)[:, learner().shape[1]:])], dim=1)
    x = (x + model.positional_embedding).permute(1, 0, 2)
    for i, block in enumerate(model.transformer.resblocks):
        if i == 2:  # TCP's rule, written on all 77 positions: w * tokens + (1 - w) * current
            x = torch.cat([x[:1], 0.3 * tokens.permute(1, 0, 2) + 0.7 * x[1:5], x[5:]])
        x = block(x)
    x = model.ln_final(x.permute(1, 0, 2))
    ref = x[torch.arange(x.shape[0]), padded_tokens(learner).argmax(-1)] @ model.text_projection

    enc = TextEncoder(model)
    ours = enc(learner(), learner.tokenized_prompts, [None, None, BlendedPrompt(tokens, 0.3)])
    assert torch.allclose(ours, ref, atol=1e-5)
    replaced = enc(learner(), learner.tokenized_prompts, [None, None, tokens])
    assert not torch.allclose(ours, replaced, atol=1e-3)
    # Weight 1 is the plain replacement.
    assert torch.equal(enc(learner(), learner.tokenized_prompts, [None, None, BlendedPrompt(tokens, 1.0)]), replaced)


@pytest.mark.parametrize("chunk_size", [1, 3])
def test_blended_deep_prompts_are_split_with_their_sequences(model, chunk_size):
    names = [f"class {i} " + "word " * (i % 5) for i in range(7)]
    learner = PromptLearner(names, model, n_ctx=4, ctx_init="a photo of a", verbose=False)
    rows = torch.nn.Parameter(torch.randn(len(names), 4, 64) * 0.1)
    enc = TextEncoder(model)

    def features_and_grad(**kw):
        rows.grad = None
        feats = enc.encode_prompts(learner(), learner.tokenized_prompts, [None, BlendedPrompt(rows, 0.6)], **kw)
        feats[:, :3].sum().backward()
        return feats.detach(), rows.grad.clone()

    plain, plain_grad = features_and_grad()
    chunked, chunked_grad = features_and_grad(chunk_size=chunk_size, checkpointing=True)
    assert torch.allclose(chunked, plain, atol=1e-5)
    assert (chunked_grad - plain_grad).norm() <= 1e-5 * plain_grad.norm()


def test_too_many_deep_prompts_is_an_error(model):
    learner = PromptLearner(NAMES, model, n_ctx=2, verbose=False)
    with pytest.raises(ValueError, match="at most 3"):
        TextEncoder(model)(learner(), learner.tokenized_prompts, [None] * 4)


@pytest.mark.parametrize("chunk_size", [1, 3, None])
def test_chunked_checkpointed_encoding_equals_one_call(model, chunk_size):
    names = [f"class {i} " + "word " * (i % 5) for i in range(11)]
    learner = PromptLearner(names, model, n_ctx=4, ctx_init="a photo of a", verbose=False)
    deep_shared = torch.nn.Parameter(torch.randn(4, 64) * 0.1)
    deep_rows = torch.nn.Parameter(torch.randn(len(names), 4, 64) * 0.1)
    enc = TextEncoder(model)

    def loss_and_grads(**kw):
        for p in (learner.ctx, deep_shared, deep_rows):
            p.grad = None
        feats = enc.encode_prompts(learner(), learner.tokenized_prompts, [None, deep_shared, deep_rows], **kw)
        (feats.square().sum() + feats[:, 0].sum()).backward()
        return feats.detach(), [p.grad.clone() for p in (learner.ctx, deep_shared, deep_rows)]

    plain, plain_grads = loss_and_grads()
    ours, grads = loss_and_grads(chunk_size=chunk_size, checkpointing=True)
    assert torch.allclose(ours, plain, atol=1e-5)
    for g, ref in zip(grads, plain_grads):
        # Chunks sum the gradient contributions in another order: equal up to float rounding.
        assert (g - ref).norm() <= 1e-5 * ref.norm()


def test_lazy_prompts_are_built_per_chunk(model):
    learner = PromptLearner(NAMES * 3, model, n_ctx=4, ctx_init="a photo of a", verbose=False)
    asked = []

    def prompts(rows):
        asked.append(len(rows))
        return learner.compose(learner.ctx, rows)

    enc = TextEncoder(model)
    lazy = enc.encode_prompts(prompts, learner.tokenized_prompts, chunk_size=5, checkpointing=True)
    assert torch.allclose(lazy, enc(learner(), learner.tokenized_prompts), atol=1e-5)
    assert max(asked) <= 5


def test_compose_rows_equals_rows_of_compose(model):
    for position, csc in (("end", False), ("middle", True), ("front", False)):
        learner = PromptLearner(NAMES, model, n_ctx=4, csc=csc, class_token_position=position, verbose=False)
        rows = torch.tensor([3, 0, 2])
        assert torch.equal(learner.compose(learner.ctx, rows), learner()[rows])


def test_maple_layout_learns_the_first_n_tokens_and_keeps_the_rest_frozen(model):
    learner = PromptLearner(["dog"], model, n_ctx=2, ctx_init="a photo of a", keep_n_ctx=True, verbose=False)
    assert learner.n_ctx == 2 and learner.prompt_prefix == "a photo of a"
    tokens = clip.tokenize(["a photo of a dog."])
    emb = model.token_embedding(tokens)
    assert torch.equal(learner.ctx.detach(), emb[0, 1:3])  # "a photo" learns
    assert torch.equal(learner.token_suffix[0, :2], emb[0, 3:5])  # "of a" stays in the prompt
    assert torch.equal(learner()[0], emb[0, :learner.tokenized_prompts.shape[1]])
    # CoOp's rule: the context is all of CTX_INIT, N_CTX ignored.
    coop = PromptLearner(["dog"], model, n_ctx=2, ctx_init="a photo of a", verbose=False)
    assert coop.n_ctx == bpe_length("a photo of a") == 4
    # N_CTX longer than the words: random init, as upstream MaPLe.
    longer = PromptLearner(["dog"], model, n_ctx=6, ctx_init="a photo of a", keep_n_ctx=True, verbose=False)
    assert longer.prompt_prefix == "X X X X X X" and longer.n_ctx == 6


def test_class_name_inside_frozen_words_is_refused(model):
    with pytest.raises(ValueError, match="CLASS_TOKEN_POSITION='middle'"):
        PromptLearner(["dog"], model, n_ctx=2, ctx_init="a photo of a", keep_n_ctx=True,
                      class_token_position="middle", verbose=False)


# ------------------------------------------------------------------ image tower
def reference_image(visual, image, prompts=None, deep=None):
    """VisionTransformer.forward with prompts appended after the embedding and the last n
    tokens replaced before block i (written out on the module's own pieces)."""
    x = visual.conv1(image).flatten(2).permute(0, 2, 1)
    cls = visual.class_embedding + torch.zeros(x.shape[0], 1, x.shape[-1])
    x = torch.cat([cls, x], dim=1) + visual.positional_embedding
    if prompts is not None:
        x = torch.cat([x, prompts.expand(x.shape[0], -1, -1)], dim=1)
    x = visual.ln_pre(x)
    for i, block in enumerate(visual.transformer.resblocks):
        if deep is not None and i < len(deep) and deep[i] is not None:
            n = deep[i].shape[0]
            x = torch.cat([x[:, :-n], deep[i].expand(x.shape[0], -1, -1)], dim=1)
        x = block(x.permute(1, 0, 2)).permute(1, 0, 2)
    return visual.ln_post(x[:, 0]) @ visual.proj


def test_image_encoder_without_prompts_is_clip(model):
    image = torch.randn(3, 3, 32, 32)
    assert torch.allclose(ImageEncoder(model.visual)(image), model.visual(image), atol=1e-6)


def test_visual_prompts_shallow_and_deep_match_the_plain_computation(model):
    g = torch.Generator().manual_seed(1)
    image = torch.randn(3, 3, 32, 32, generator=g)
    shallow = torch.randn(2, 64, generator=g) * 0.1
    deep = [None, torch.randn(2, 64, generator=g) * 0.1, torch.randn(2, 64, generator=g) * 0.1]
    encoder = ImageEncoder(model.visual)
    ours = encoder(image, prompts=shallow, deep_prompts=deep)
    assert torch.allclose(ours, reference_image(model.visual, image, shallow, deep), atol=1e-5)
    assert not torch.allclose(ours, model.visual(image), atol=1e-3)
    encoder.checkpointing = True
    assert torch.allclose(encoder(image, prompts=shallow, deep_prompts=deep), ours, atol=1e-6)


def test_resnet_clip_runs_as_is_and_refuses_prompts():
    torch.manual_seed(0)
    rn = clip.model.CLIP(32, 64, (1, 1, 1, 1), 64, None, 77, 49408, 64, 1, 1).float().eval()
    encoder = ImageEncoder(rn.visual)
    image = torch.randn(2, 3, 64, 64)
    assert torch.allclose(encoder(image), rn.visual(image), atol=1e-6)
    with pytest.raises(TypeError, match="need a ViT backbone"):
        encoder(image, prompts=torch.zeros(2, 64))
    with pytest.raises(TypeError, match="ModifiedResNet"):
        _ = encoder.width


def test_normalised_features_through_the_classifier(model):
    from trainers.common.model import PromptCLIP

    learner = PromptLearner(NAMES, model, n_ctx=4, ctx_init="a photo of a", verbose=False)
    clf = PromptCLIP(model, learner)
    image = torch.randn(2, 3, 32, 32)
    expected = F.normalize(model.visual(image), dim=-1)
    assert torch.allclose(clf.encode_image(image), expected, atol=1e-6)
    assert clf.image_features_are_fixed
