"""The synthetic world: coverage property, determinism, split format, attribute file."""
from __future__ import annotations

import io
import json
import math
import os

import numpy as np
import pytest
from PIL import Image

from tools.synthetic import attribute_file, generate, language, render
from tools.synthetic import world as sw

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ATTRIBUTE_FILE = os.path.join(REPO_ROOT, "attribute_data", "synthetic.json")


@pytest.fixture(scope="module")
def world() -> sw.World:
    return sw.build_world()


def test_base_is_first_half_and_covers_every_novel_value(world):
    n = len(world.classes)
    assert n == 40 and world.num_base == math.ceil(n / 2) == 20
    assert [c.label for c in world.classes] == list(range(n))
    for attr in sw.VISIBLE_ATTRIBUTES:
        base_values = {c.value(attr) for c in world.base}
        for c in world.novel:
            assert c.value(attr) in base_values, (attr, c)
    assert sw.uncovered_novel_values(world) == []


def test_no_novel_combination_appears_in_base(world):
    base = {c.visible for c in world.base}
    assert not any(c.visible in base for c in world.novel)
    assert len({c.visible for c in world.classes}) == len(world.classes)
    assert len(set(world.classnames)) == len(world.classnames)


def test_coverage_check_detects_a_missing_value(world):
    # Give one novel class a colour no base class has: the check must name it.
    base_colours = {c.colour for c in world.base}
    unused = next((v for v in sw.COLOURS if v not in base_colours), None)
    novel = list(world.novel)
    fake = sw.WorldClass(novel[0].label, novel[0].name, novel[0].shape, unused or "crimson",
                         novel[0].pattern, novel[0].size, novel[0].habitat, novel[0].diet)
    broken = sw.World(world.seed, world.base + (fake,) + tuple(novel[1:]))
    assert ("colour", fake.colour) in sw.uncovered_novel_values(broken)


def test_other_seeds_also_satisfy_coverage():
    for seed in (1, 2, 3):
        w = sw.build_world(seed)
        assert sw.uncovered_novel_values(w) == []
    assert sw.build_world(1).classes != sw.build_world(0).classes


def test_world_and_images_are_deterministic(world):
    assert sw.build_world() == world
    a = render.render_class_image(world, 3, 7)
    b = render.render_class_image(sw.build_world(), 3, 7)
    assert a.shape == (64, 64, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b)
    assert not np.array_equal(a, render.render_class_image(world, 3, 8))  # nuisances vary


def test_split_entries_format(world):
    split = generate.split_entries(world)
    assert set(split) == {"train", "val", "test"}
    counts = {part: len(rows) for part, rows in split.items()}
    assert counts == {"train": 40 * generate.N_TRAIN, "val": 40 * generate.N_VAL, "test": 40 * generate.N_TEST}
    assert generate.N_TRAIN >= 16
    relpaths = [row[0] for rows in split.values() for row in rows]
    assert len(set(relpaths)) == len(relpaths)
    for rows in split.values():
        for relpath, label, classname in rows:
            assert isinstance(label, int) and world.classes[label].name == classname
            assert relpath.startswith(classname + "/") and not relpath.startswith("/")
    assert split == generate.split_entries(sw.build_world())


def test_bad_shape_is_refused():
    with pytest.raises(ValueError, match="unknown shape"):
        render.render_object("oval", "red", "plain", "small", np.random.default_rng(0))


def test_attribute_file_matches_world(world):
    with open(ATTRIBUTE_FILE) as f:
        data = json.load(f)
    # The shipped file is exactly what the generator writes (regenerate if this fails).
    assert data == attribute_file.build_attribute_data(world)
    names = [a["name"] for a in data["attributes"]]
    assert 4 <= len(names) <= 8 and len(set(names)) == len(names)
    assert set(sw.HIDDEN_ATTRIBUTES) <= set(names)
    assert [c["name"] for c in data["classes"]] == world.classnames
    for entry in data["classes"]:
        assert set(entry["descriptions"]) == set(names)
        for sentences in entry["descriptions"].values():
            assert sentences and all(isinstance(s, str) and s.strip() for s in sentences)
            for s in sentences:
                assert entry["name"] in s and len(s.split()) <= 30
    for key in ("procedure", "model", "date", "notes"):
        assert data["generator"][key]


def test_descriptions_are_not_one_template(world):
    data = attribute_file.build_attribute_data(world)
    for attr in sw.VISIBLE_ATTRIBUTES:
        frames = {c["descriptions"][attr][0].replace(c["name"], "X") for c in data["classes"]}
        assert len(frames) > 3, attr


def test_descriptions_state_the_ground_truth(world):
    data = attribute_file.build_attribute_data(world)
    for c, entry in zip(world.classes, data["classes"]):
        for attr in sw.ATTRIBUTE_VALUES:
            sentence = entry["descriptions"][attr][0]
            assert any(p in sentence for p in language.VALUE_PHRASES[attr][c.value(attr)]), (attr, sentence)


def test_captions_report_what_they_describe():
    rng = np.random.default_rng(0)
    values = {"shape": "star", "colour": "red", "pattern": "dotted", "size": "small"}
    for _ in range(50):
        caption, described = language.caption_for(values, rng)
        assert described and set(described) <= set(sw.VISIBLE_ATTRIBUTES)
        for attr in described:
            assert any(p in caption for p in language.VALUE_PHRASES[attr][values[attr]]), (attr, caption)
    named, _ = language.caption_for(values, rng, name="umbrix")
    assert "umbrix" in named


def test_generation_into_tmp_data_root(tmp_path, monkeypatch):
    # A smaller world keeps this test fast; the layout code is the same.
    monkeypatch.setattr(generate, "N_TRAIN", 2)
    monkeypatch.setattr(generate, "N_VAL", 1)
    monkeypatch.setattr(generate, "N_TEST", 1)
    world = sw.build_world()
    out = generate.ensure_world(str(tmp_path))
    assert out == os.path.join(str(tmp_path), "synthetic")
    assert sorted(os.listdir(tmp_path)) == ["synthetic"]  # the temp folder is gone
    with open(os.path.join(out, generate.SPLIT_FILE)) as f:
        split = json.load(f)
    assert split == generate.split_entries(world)
    relpath, label, _ = split["test"][5]
    with Image.open(os.path.join(out, generate.IMAGE_DIR, relpath)) as im:
        assert im.size == (64, 64) and im.mode == "RGB"
        pixels = np.asarray(im)
    assert np.array_equal(pixels, render.render_class_image(world, label, int(relpath[-8:-4])))
    # Second call reuses the folder; a folder from another seed is refused with the fix.
    assert generate.ensure_world(str(tmp_path)) == out
    with pytest.raises(RuntimeError, match="delete the folder"):
        generate.ensure_world(str(tmp_path), seed=5)


def test_png_bytes_are_deterministic(world):
    def png(img):
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="PNG")
        return buf.getvalue()

    assert png(render.render_class_image(world, 30, 0)) == png(render.render_class_image(sw.build_world(), 30, 0))


def test_unwritable_root_names_the_fix(tmp_path):
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    with pytest.raises(RuntimeError, match="DATASET.ROOT"):
        generate.ensure_world(str(blocked / "data"))
