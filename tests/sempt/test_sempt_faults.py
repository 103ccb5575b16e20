"""SemPT's files under faults found by trying (issue 22): the description cache on a full or
read-only disk, its file mode, an attribute file that is not UTF-8."""
import json
import os
import stat

import pytest
import torch

from trainers.parts.attributes import AttributeDataError, load_attribute_file
from trainers.common.text_encoder import tokenize
from trainers.parts.description_bank import SentenceEmbeddingCache, encode_descriptions
from tests.utils.full_disk import fill_disk, make_read_only


class CountingEncoder:
    """Stands in for the text encoder: one fixed vector per sentence, and a count of calls."""

    def __init__(self) -> None:
        self.calls = 0

    def tokenize(self, texts):  # the encoder tokenizes as its model does (CLIP's BPE here)
        return tokenize(texts)

    def encode_text(self, texts):
        self.calls += 1
        return torch.stack([torch.full((4,), float(len(t))) for t in texts])


SENTENCES = [[["a red fox", "a small fox"]], [["a grey wolf", "a big wolf"]]]  # [class][attribute][j]


def test_description_cache_on_a_full_disk_carries_on_with_one_warning(tmp_path, capsys, monkeypatch):
    cache = SentenceEmbeddingCache(tmp_path / "descriptions", "key")
    encoder = CountingEncoder()
    fill_disk(monkeypatch, 10)
    first = encode_descriptions(encoder, SENTENCES[:1], cache)  # no exception: the run goes on
    both = encode_descriptions(encoder, SENTENCES, cache)
    out = capsys.readouterr().out
    assert out.count("Warning: cannot write the description cache") == 1
    assert "is full" in out and "DESC_CACHE_DIR" in out
    assert torch.equal(both[:1], first) and both.shape == (2, 1, 4)
    assert encoder.calls == 2  # the first class's sentences stayed in memory
    assert os.listdir(tmp_path / "descriptions") == []  # no file, no temporary left


def test_description_cache_on_a_read_only_disk_carries_on(tmp_path, capsys, monkeypatch):
    make_read_only(monkeypatch)
    cache = SentenceEmbeddingCache(tmp_path / "descriptions", "key")
    cache.add(["a red fox"], torch.ones(1, 4))
    cache.save()
    cache.save()
    out = capsys.readouterr().out
    assert out.count("Warning: cannot write the description cache") == 1 and "Read-only file system" in out
    assert torch.equal(cache.get(["a red fox"]), torch.ones(1, 4))


def test_description_cache_follows_the_umask(tmp_path):
    previous = os.umask(0o002)
    try:
        cache = SentenceEmbeddingCache(tmp_path / "descriptions", "key")
        cache.add(["a red fox"], torch.ones(1, 4))
        cache.save()
    finally:
        os.umask(previous)
    assert stat.S_IMODE(os.stat(cache.path).st_mode) == 0o664
    assert torch.equal(SentenceEmbeddingCache(tmp_path / "descriptions", "key").get(["a red fox"]), torch.ones(1, 4))


def test_an_attribute_file_that_is_not_utf8_names_the_file_and_the_fix(tmp_path):
    data = {"dataset": "Toy", "domain": "toys", "attributes": [{"name": "colour", "definition": "its colour"}],
            "classes": [{"name": "café", "descriptions": {"colour": ["A café is brown."]}}]}
    path = tmp_path / "toy.json"
    path.write_bytes(json.dumps(data, ensure_ascii=False).encode("latin-1"))
    with pytest.raises(AttributeDataError) as info:
        load_attribute_file(path)
    message = str(info.value)
    assert f"{path} is not UTF-8 text" in message and "Save it again as UTF-8" in message
    assert info.value.__suppress_context__
