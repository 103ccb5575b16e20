"""open_clip backbones: the same weights through both loaders give the same numbers.

The shipped tiny synthetic CLIP, converted to open_clip's format with open_clip's own
converter (``build_model_from_openai_state_dict``), is loaded as
``open_clip:<config.json>`` + ``PRETRAINED <file>`` and compared with the OpenAI path.
"""
from __future__ import annotations

import re
from pathlib import Path

import open_clip
import pytest
import torch

import train
from trainers.common.clip_loader import load_clip
from trainers.common.image_encoder import ImageEncoder
from trainers.common.open_clip_backbone import OpenCLIP, convert_openai_checkpoint, load_open_clip
from trainers.common.prompt_learner import PromptLearner
from trainers.common.text_encoder import TextEncoder, tokenize

from tests.utils.open_clip_models import CONFIGS, write_config

from .test_feature_cache import METHODS, Method, checkpoints, run_args

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "pretrained" / "tiny_clip_synthetic.pt"


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """(config JSON, weights file) of the tiny synthetic CLIP in open_clip's format."""
    folder = tmp_path_factory.mktemp("open_clip")
    convert_openai_checkpoint(TINY, folder / "tiny_synthetic.pt", folder / "tiny-synthetic.json")
    return folder / "tiny-synthetic.json", folder / "tiny_synthetic.pt"


@pytest.fixture()
def both(converted):
    config, weights = converted
    return load_clip(str(TINY)).float(), load_open_clip(f"open_clip:{config}", str(weights))


def test_the_towers_agree_with_and_without_deep_prompts(both):
    openai, opened = both
    assert isinstance(opened, OpenCLIP) and opened.batch_first
    tokens = tokenize(["a photo of a zorbel.", "a small red round thing with stripes"])
    torch.manual_seed(0)
    text_deep = [None, torch.randn(2, 64), torch.randn(2, 2, 64)]
    for deep in (None, text_deep):
        a = TextEncoder(openai).encode_prompts(openai.token_embedding(tokens), tokens, deep)
        b = TextEncoder(opened).encode_prompts(opened.token_embedding(tokens), tokens, deep)
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    image = torch.randn(2, 3, 64, 64)
    shallow, image_deep = torch.randn(3, 64), [None, torch.randn(3, 64), None, torch.randn(2, 3, 64)]
    a, b = ImageEncoder(openai.visual), ImageEncoder(opened.visual)
    torch.testing.assert_close(a(image), b(image), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(a(image, shallow, image_deep), b(image, shallow, image_deep), rtol=1e-5, atol=1e-6)
    # ... and each equals open_clip's own forward.
    torch.testing.assert_close(b(image), opened.encode_image(image), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(TextEncoder(opened).encode_tokens(tokens), opened.encode_text(tokens), rtol=1e-5, atol=1e-6)


@pytest.fixture(scope="module")
def families(converted, tmp_path_factory):
    """``NAME`` / ``PRETRAINED`` of one model per family: OpenAI weights converted, a
    SigLIP-shaped tower and an EVA-shaped timm tower (both random)."""
    folder = tmp_path_factory.mktemp("families")
    config, weights = converted
    return {
        "openai-architecture": (f"open_clip:{config}", str(weights)),
        "last-token": (f"open_clip:{write_config(folder, 'tiny-last-token')}", "random"),
        "eva-timm": (f"open_clip:{write_config(folder, 'tiny-eva')}", "random"),
        "hf-tokenizer": (f"open_clip:{write_config(folder, 'tiny-hf-text')}", "random"),
    }


FAMILIES = ["openai-architecture", "last-token", "eva-timm", "hf-tokenizer"]


@pytest.mark.parametrize("family", FAMILIES)
def test_a_learner_initialised_from_words_is_the_sentence(family, families):
    model = load_open_clip(*families[family])
    names = ["zorbel", "quintal flower"]
    learner = PromptLearner(names, model, n_ctx=4, ctx_init="a photo of a")
    features = TextEncoder(model)(learner(), learner.tokenized_prompts)
    # open_clip's own tokenizer and text forward
    expected = model.encode_text(open_clip.get_tokenizer(model.model_name)([f"a photo of a {n}." for n in names]))
    torch.testing.assert_close(features, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("family", FAMILIES)
def test_the_encoders_are_open_clips_forwards(family, families):
    model = load_open_clip(*families[family])
    tokens = model.text_spec.tokenize(["a photo of a zorbel.", "a small red round thing with stripes"])
    torch.testing.assert_close(TextEncoder(model).encode_tokens(tokens), model.encode_text(tokens), rtol=1e-5, atol=1e-6)
    size = model.input_resolution
    image = torch.randn(2, 3, size, size)
    encoder = ImageEncoder(model.visual)
    torch.testing.assert_close(encoder(image), model.encode_image(image), rtol=1e-5, atol=1e-6)
    if encoder.is_vit:  # prompts of zero tokens change nothing
        empty = torch.zeros(0, encoder.width)
        torch.testing.assert_close(encoder(image, empty, [empty] * encoder.n_blocks), model.encode_image(image),
                                   rtol=1e-5, atol=1e-6)


def test_the_text_side_is_read_from_the_model(families):
    spec = load_open_clip(*families["last-token"]).text_spec
    assert (spec.context_length, spec.pooling, spec.causal, spec.truncatable) == (64, "last", False, False)
    assert spec.tokenize(["a zorbel"]).shape == (1, 64)
    spec = load_open_clip(*families["eva-timm"]).text_spec
    assert (spec.context_length, spec.pooling, spec.causal, spec.truncatable, spec.n_prefix) == (77, "argmax", True, True, 1)
    spec = load_open_clip(*families["hf-tokenizer"]).text_spec  # no start token: context right at position 0
    assert (spec.n_prefix, spec.max_tokens, spec.count_tokens("A photo of a zorbel.")) == (0, 63, 5)
    with pytest.raises(ValueError, match=r"has 70 tokens; open_clip:tiny-hf-text's text tower reads at most 63"):
        spec.tokenize(["zorbel " * 70])


def test_a_context_longer_than_its_placeholder_text_is_refused(families):
    class ShortText(PromptLearner):  # an init whose text has fewer tokens than vectors
        def initial_context(self, clip_model, n_ctx, ctx_init, n_cls, keep_n_ctx):
            vectors, _ = super().initial_context(clip_model, n_ctx, ctx_init, n_cls, keep_n_ctx)
            return vectors, "photo"

    model = load_open_clip(*families["hf-tokenizer"])
    with pytest.raises(ValueError, match="is 1 tokens in open_clip:tiny-hf-text's tokenizer, fewer than the 4 context"):
        ShortText(["zorbel"], model, n_ctx=4)


def test_weights_must_be_named(converted):
    config, _ = converted
    with pytest.raises(ValueError, match=r"PRETRAINED is empty .*'random'"):
        load_open_clip(f"open_clip:{config}", "")
    with pytest.raises(FileNotFoundError, match="no such checkpoint file"):
        load_open_clip(f"open_clip:{config}", "/nowhere/weights.pt")
    with pytest.raises(ValueError, match="not a pretrained tag|neither a pretrained tag"):
        load_open_clip("open_clip:ViT-B-16", "no-such-tag")
    with pytest.raises(ValueError, match="open_clip has no model of that name"):
        load_open_clip("open_clip:ViT-Q-99", "random")


def test_random_weights_only_when_asked_and_identified_by_their_digest(converted):
    config, _ = converted
    torch.manual_seed(1)
    a = load_open_clip(f"open_clip:{config}", "random")
    torch.manual_seed(2)
    b = load_open_clip(f"open_clip:{config}", "random")
    assert a.identity != b.identity  # caches never mix two draws of random weights
    assert a.identity.startswith("open_clip|") and "random:" in a.identity


def test_an_offline_tag_names_what_to_fetch(monkeypatch, tmp_path):
    monkeypatch.setenv("CLIP_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(FileNotFoundError, match=r"(?s)not available: offline.*huggingface-cli download laion/\S+ open_clip_pytorch_model.bin.*PRETRAINED to a checkpoint file"):
        load_open_clip("open_clip:ViT-B-32", "laion2b_s34b_b79k")


def test_a_text_tower_prompts_cannot_enter_is_refused_with_the_backbone_named(tmp_path):
    import json

    config = json.loads(json.dumps(CONFIGS["tiny-last-token"]))
    config["text_cfg"]["embed_cls"] = True  # CoCa's class token
    path = tmp_path / "tiny-cls-text.json"
    path.write_text(json.dumps(config))
    with pytest.raises(NotImplementedError, match="open_clip:tiny-cls-text: a text tower with a class token"):
        load_open_clip(f"open_clip:{path}", "random")


# ------------------------------------------------------------ every method, both loaders
def _train(method: Method, data: str, out: Path, cache: Path, *opts: str) -> str:
    train.cli(run_args(method, data, out, cache, "OPTIM.MAX_EPOCH", "1", *opts))
    return (out / "log.txt").read_text()


def _losses(log: str):
    return [float(v) for v in re.findall(r"loss\w* ([-\d.]+) \(", log)]


@pytest.mark.parametrize("method", METHODS, ids=lambda m: m.trainer)
def test_every_method_is_the_same_through_both_loaders(method, converted, synthetic_data_root, tmp_path, monkeypatch):
    monkeypatch.setenv("SEMPT_CACHE_DIR", str(tmp_path / "project_cache"))
    monkeypatch.setattr(train, "collect_env_info", lambda: "(not collected in this test)")
    config, weights = converted
    logs = {}
    for name, opts in {
        "openai": (),
        "open_clip": ("MODEL.BACKBONE.NAME", f"open_clip:{config}", "MODEL.BACKBONE.PRETRAINED", str(weights)),
    }.items():
        logs[name] = _train(method, synthetic_data_root, tmp_path / name, tmp_path / "features", "TRAIN.PRINT_FREQ", "1", *opts)
    accuracy = [re.findall(r"\* accuracy: (.+)", log)[-1] for log in logs.values()]
    assert accuracy[0] == accuracy[1]
    torch.testing.assert_close(_losses(logs["open_clip"]), _losses(logs["openai"]), rtol=1e-5, atol=1e-6)
    trained = [checkpoints(tmp_path / name) for name in logs]
    assert list(trained[0]) == list(trained[1])
    for key in trained[0]:
        for param in trained[0][key]:
            torch.testing.assert_close(trained[1][key][param], trained[0][key][param], rtol=1e-5, atol=1e-6)
    # The two backbones never share a feature-cache entry: the second run, on the same
    # cache folder, computed its features (their identities differ).
    lines = [line for line in logs["open_clip"].splitlines() if line.startswith("Image-feature cache")]
    if lines and "not used" not in lines[-1]:
        assert re.search(r"[1-9]\d* misses", lines[-1]), lines[-1]


FEW_METHODS = [m for m in METHODS if m.trainer in ("CoOp", "MaPLe", "SemPT")]
FAMILY_RUNS = ([(m, f) for f in ("last-token", "eva-timm") for m in METHODS]
               + [(m, "hf-tokenizer") for m in FEW_METHODS])


@pytest.mark.parametrize("method,family", FAMILY_RUNS, ids=lambda v: getattr(v, "trainer", v))
def test_every_method_trains_on_every_family(method, family, families, synthetic_data_root, tmp_path, monkeypatch):
    monkeypatch.setattr(train, "collect_env_info", lambda: "(not collected in this test)")
    name, pretrained = families[family]
    size = load_open_clip(name, pretrained).input_resolution
    opts = ("MODEL.BACKBONE.NAME", name, "MODEL.BACKBONE.PRETRAINED", pretrained, "INPUT.SIZE", f"({size}, {size})")
    log = _train(method, synthetic_data_root, tmp_path / "run", tmp_path / "features", *opts)
    assert "=> result" in log
    assert all(v == v for v in _losses(log))  # finite (no NaN)
    if not method.eval_only:
        assert checkpoints(tmp_path / "run")


def test_a_config_file_names_its_tokenizer_whatever_its_file_name(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # open_clip would pick SigLIP's downloaded tokenizer for any *name* containing "siglip".
    config = write_config(tmp_path, "tiny-last-token")
    renamed = tmp_path / "tiny-siglip-shaped.json"
    renamed.write_text(config.read_text())
    model = load_open_clip(f"open_clip:{renamed}", "random")
    assert model.text_spec.context_length == 64 and model.text_spec.tokenize(["a zorbel"]).shape == (1, 64)
