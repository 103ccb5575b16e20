"""The truncated TextEncoder and the PromptLearner against CLIP's plain 77-position computation."""
import pytest
import torch
import torch.nn.functional as F

from trainers.common.openai_clip import clip
from trainers.common.prompt_learner import PromptLearner, bpe_length
from trainers.common.text_encoder import TextEncoder, class_text_features

CLASSNAMES = ["dog", "golden_retriever", "sea lion", "itap", "annual crop land that is very wide"]


def plain_features(clip_model, prompts77, tokenized77):
    """CLIP's own text path over all 77 positions (its transformer and fixed mask)."""
    x = prompts77 + clip_model.positional_embedding
    x = clip_model.transformer(x.permute(1, 0, 2)).permute(1, 0, 2)
    x = clip_model.ln_final(x)
    return x[torch.arange(x.shape[0]), tokenized77.argmax(-1)] @ clip_model.text_projection


def plain_prompts(clip_model, learner, position):
    """Upstream CoOp's per-class prompt assembly over 77 positions, written out independently."""
    texts = [f"{learner.prompt_prefix} {name}." for name in learner.classnames]
    tokenized = clip.tokenize(texts)
    embedding = clip_model.token_embedding(tokenized)
    m = learner.n_ctx
    prefix, suffix = embedding[:, :1], embedding[:, 1 + m:]
    ctx = learner.ctx if learner.ctx.dim() == 3 else learner.ctx.unsqueeze(0).expand(len(texts), -1, -1)
    rows = []
    for i, name in enumerate(learner.classnames):
        n = bpe_length(name)
        if position == "end":
            parts = [prefix[i], ctx[i], suffix[i]]
        elif position == "front":
            parts = [prefix[i], suffix[i, :n], ctx[i], suffix[i, n:]]
        else:
            h = m // 2
            parts = [prefix[i], ctx[i, :h], suffix[i, :n], ctx[i, h:], suffix[i, n:]]
        rows.append(torch.cat(parts))
    return torch.stack(rows), tokenized


def test_hand_crafted_text_matches_encode_text_in_chunks(tiny_clip):
    texts = ["a photo of a dog.", "x", "a very long sentence about a small cat that sits on a red mat."] * 3
    encoder = TextEncoder(tiny_clip)
    with torch.no_grad():
        reference = tiny_clip.encode_text(clip.tokenize(texts))
        features = encoder.encode_text(texts, chunk_size=2)
    assert features.shape == reference.shape
    assert (features - reference).abs().max() < 1e-5


def test_truncation_is_what_runs(tiny_clip):
    """The encoder must not run the 77 positions (else the speed-up silently vanishes)."""
    encoder = TextEncoder(tiny_clip)
    seen = []
    hook = tiny_clip.transformer.resblocks[0].mlp.register_forward_hook(lambda m, i, o: seen.append(o.shape[0]))
    tokenized = clip.tokenize(["a photo of a dog."])
    encoder(tiny_clip.token_embedding(tokenized), tokenized)
    hook.remove()
    assert seen == [int(tokenized.argmax()) + 1]


@pytest.mark.parametrize("position", ["end", "middle", "front"])
@pytest.mark.parametrize("csc", [False, True])
def test_prompt_learner_features_and_grads_equal_plain_path(tiny_clip, position, csc):
    torch.manual_seed(0)
    learner = PromptLearner(CLASSNAMES, tiny_clip, n_ctx=4, csc=csc, class_token_position=position, verbose=False)
    encoder = TextEncoder(tiny_clip)

    features = encoder(learner(), learner.tokenized_prompts)
    (grad,) = torch.autograd.grad(features.square().sum(), learner.ctx)

    prompts77, tokenized77 = plain_prompts(tiny_clip, learner, position)
    reference = plain_features(tiny_clip, prompts77, tokenized77)
    (grad_ref,) = torch.autograd.grad(reference.square().sum(), learner.ctx)

    assert learner.tokenized_prompts.shape[1] < 77  # buffers are cut to the longest prompt
    assert (features - reference).abs().max() < 1e-5
    assert (grad - grad_ref).abs().max() < 1e-5 * max(1.0, grad_ref.abs().max().item())


def test_ctx_init_reproduces_the_hand_written_prompt(tiny_clip):
    learner = PromptLearner(CLASSNAMES, tiny_clip, n_ctx=16, ctx_init="a_photo of a", verbose=False)
    assert learner.n_ctx == 4 and learner.ctx.shape == (4, tiny_clip.ln_final.weight.shape[0])
    with torch.no_grad():
        features = TextEncoder(tiny_clip)(learner(), learner.tokenized_prompts)
        reference = tiny_clip.encode_text(clip.tokenize([f"a photo of a {n.replace('_', ' ')}." for n in CLASSNAMES]))
    assert (features - reference).abs().max() < 1e-5


def test_ctx_init_counts_bpe_tokens_not_words(tiny_clip):
    learner = PromptLearner(["dog"], tiny_clip, ctx_init="itap of a", verbose=False)
    assert learner.n_ctx == bpe_length("itap of a") == 4  # "itap" is two BPE tokens


def test_class_specific_init_copies_the_words(tiny_clip):
    learner = PromptLearner(CLASSNAMES, tiny_clip, ctx_init="a photo of a", csc=True, verbose=False)
    assert learner.ctx.shape[0] == len(CLASSNAMES)
    assert torch.equal(learner.ctx[0], learner.ctx[-1])


def test_class_buffers_are_not_saved(tiny_clip):
    learner = PromptLearner(CLASSNAMES, tiny_clip, n_ctx=2, verbose=False)
    assert list(learner.state_dict()) == ["ctx"]


def test_bad_position_and_too_long_prompt_are_explained(tiny_clip):
    with pytest.raises(ValueError, match="CLASS_TOKEN_POSITION"):
        PromptLearner(["dog"], tiny_clip, class_token_position="left", verbose=False)
    with pytest.raises(ValueError, match="77 tokens"):
        PromptLearner(["dog " * 40], tiny_clip, n_ctx=40, verbose=False)


def test_class_text_features_ensemble(tiny_clip):
    encoder = TextEncoder(tiny_clip)
    templates = ["a photo of a {}.", "art of the {}."]
    features = class_text_features(encoder, ["sea_lion", "dog"], templates)
    with torch.no_grad():
        per_template = [
            F.normalize(tiny_clip.encode_text(clip.tokenize([t.format(n) for n in ["sea lion", "dog"]])), dim=-1)
            for t in templates
        ]
    reference = F.normalize(torch.stack(per_template).mean(0), dim=-1)
    assert (features - reference).abs().max() < 1e-5
    assert not features.requires_grad


def test_class_text_features_mean_of_raw_template_features(tiny_clip):
    """``normalize_templates=False``: the raw per-template features are averaged, then normalised
    (PromptSRC's teacher), which differs from CLIP's ensemble of normalised features."""
    encoder = TextEncoder(tiny_clip)
    templates = ["a photo of a {}.", "art of the {}.", "a very small and blurry {} in the dark."]
    names = ["sea lion", "dog", "x"]
    with torch.no_grad():
        raw = torch.stack([tiny_clip.encode_text(clip.tokenize([t.format(n) for n in names])) for t in templates])
    features = class_text_features(encoder, ["sea_lion", "dog", "x"], templates, normalize_templates=False)
    mean = raw.mean(0)
    assert (features - mean / mean.norm(dim=-1, keepdim=True)).abs().max() < 1e-5
    ensemble = class_text_features(encoder, names, templates)
    assert (features - ensemble).abs().max() > 1e-4  # the two averages are not the same teacher
    single = class_text_features(encoder, names, templates[:1], normalize_templates=False)
    assert (single - F.normalize(raw[0], dim=-1)).abs().max() < 1e-5


def test_imagenet_templates_are_promptsrc_s_sixty():
    from trainers.common.templates import IMAGENET_TEMPLATES

    assert len(IMAGENET_TEMPLATES) == len(set(IMAGENET_TEMPLATES)) == 60
    assert all(t.count("{}") == 1 for t in IMAGENET_TEMPLATES)
    assert IMAGENET_TEMPLATES[0] == "a photo of a {}." and IMAGENET_TEMPLATES[-1] == "itap of the {}."
