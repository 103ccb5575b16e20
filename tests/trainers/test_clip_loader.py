import os

import pytest
import torch

from trainers.common.openai_clip import clip
from trainers.common.clip_loader import load_clip, load_clip_to_cpu, resolve_clip_checkpoint
from trainers.common.precision import resolve_precision


class _Cfg:
    """The two attributes load_clip_to_cpu reads."""

    def __init__(self, name):
        self.MODEL = type("M", (), {"BACKBONE": type("B", (), {"NAME": name})})()


def test_load_by_absolute_path_matches_saved_weights(tiny_clip_path):
    model = load_clip_to_cpu(_Cfg(tiny_clip_path))
    saved = torch.load(tiny_clip_path, weights_only=True)
    assert model.dtype == torch.float16  # the layout of clip.build_model, as upstream
    assert model.visual.input_resolution == 32
    assert torch.equal(model.token_embedding.weight, saved["token_embedding.weight"])
    assert torch.allclose(model.text_projection.float(), saved["text_projection"], atol=1e-3)


def test_relative_path_resolves_against_cwd(tiny_clip_path, monkeypatch):
    monkeypatch.chdir(os.path.dirname(tiny_clip_path))
    assert resolve_clip_checkpoint(os.path.basename(tiny_clip_path)).samefile(tiny_clip_path)


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning", "ignore::FutureWarning")
def test_jit_archive_is_read(tmp_path, tiny_clip_path):
    # OpenAI distributes TorchScript archives of the whole CLIP: trace the tiny one the same way.
    reference = load_clip(tiny_clip_path).float()
    traced = torch.jit.trace(reference, (torch.zeros(1, 3, 32, 32), clip.tokenize(["a dog"])), check_trace=False)
    archive = tmp_path / "clip_jit.pt"
    torch.jit.save(traced, str(archive))
    model = load_clip(str(archive))
    assert torch.equal(model.token_embedding.weight, reference.token_embedding.weight)
    assert torch.equal(model.positional_embedding, reference.positional_embedding)


def test_missing_named_model_error_says_where_to_put_it(tmp_path, monkeypatch):
    monkeypatch.setenv("CLIP_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("CLIP_OFFLINE", "1")
    with pytest.raises(FileNotFoundError) as err:
        load_clip("ViT-B/16")
    message = str(err.value)
    assert clip.clip._MODELS["ViT-B/16"] in message
    assert str(tmp_path / "cache" / "ViT-B-16.pt") in message
    assert "CLIP_CACHE_DIR" in message and "MODEL.BACKBONE.NAME" in message


def test_cached_named_model_is_found_without_download(tmp_path, monkeypatch, tiny_clip_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "ViT-B-16.pt").write_bytes(open(tiny_clip_path, "rb").read())
    monkeypatch.setenv("CLIP_CACHE_DIR", str(cache))
    monkeypatch.setenv("CLIP_OFFLINE", "1")
    assert load_clip("ViT-B/16").visual.input_resolution == 32


def test_unknown_name_lists_models(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match="ViT-B/16"):
        resolve_clip_checkpoint("ViT-B/99")


def test_precision_is_fp32_on_cpu_and_validated():
    for prec in ("fp16", "fp32", "amp", "bf16"):
        p = resolve_precision(prec, "cpu")
        assert p.weight_dtype is torch.float32 and p.autocast_dtype is None and p.grad_scaler() is None
    assert resolve_precision("amp", "cuda").uses_grad_scaler
    assert resolve_precision("fp16", "cuda").weight_dtype is torch.float16
    computes = {prec: resolve_precision(prec, "cuda").compute_dtype for prec in ("fp16", "fp32", "amp", "bf16")}
    assert computes == {"fp16": torch.float16, "fp32": torch.float32, "amp": torch.float16, "bf16": torch.bfloat16}
    assert resolve_precision("amp", "cpu").compute_dtype is torch.float32
    with pytest.raises(ValueError, match="PREC"):
        resolve_precision("fp8", "cpu")
