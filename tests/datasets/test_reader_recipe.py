"""DEVELOPING.md's "Writing a dataset reader" examples, run as written: the reader on the tree
its fabricator writes, through the protocol (names, base/new, few-shot cache, split creation)."""
from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

import dassl.data.datasets as dassl_datasets
from dassl.data.datasets.protocol import DatasetNotFoundError
from dassl.utils.registry import Registry
from tests.utils import fabricate
from tests.utils.dataset_cfg import make_cfg

REPO = Path(__file__).resolve().parents[2]
CLASSNAMES = ["blue jay", "robin", "house wren"]


def recipe_blocks() -> list:
    text = (REPO / "DEVELOPING.md").read_text()
    section = text.split("## Writing a dataset reader", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, re.S)


@pytest.fixture()
def recipe(monkeypatch, tmp_path):
    """The reader class (registered in a registry of its own, not the project's) and the
    fabricator, with the class list it reads."""
    reader_code, fabricator_code = recipe_blocks()
    registry = Registry("DATASET")
    monkeypatch.setattr(dassl_datasets, "DATASET_REGISTRY", registry)
    reader_ns: dict = {}
    exec(compile(reader_code, "DEVELOPING.md (reader)", "exec"), reader_ns)
    classnames_dir = tmp_path / "classnames"
    classnames_dir.mkdir()
    (classnames_dir / "birds.txt").write_text("\n".join(CLASSNAMES) + "\n")

    def read_classlist(name):
        return (classnames_dir / f"{name}.txt").read_text().splitlines()

    fab_ns = {**vars(fabricate), "read_classlist": read_classlist}
    exec(compile(fabricator_code, "DEVELOPING.md (fabricator)", "exec"), fab_ns)
    return registry.get("Birds"), fab_ns["make_birds_tree"]


def test_the_recipe_reader_reads_its_fabricated_tree(recipe, tmp_path):
    reader, make_tree = recipe
    root = make_tree(tmp_path / "data")
    full = reader(make_cfg(root, "Birds"))
    assert [c.replace("_", " ") for c in full.classnames] == CLASSNAMES
    assert (len(full.train_x), len(full.val), len(full.test)) == (3 * 2, 3 * 1, 3 * 1)
    base = reader(make_cfg(root, "Birds", shots=1, subsample="base", seed=1))
    assert [c.replace("_", " ") for c in base.classnames] == CLASSNAMES[:2] and len(base.train_x) == 2
    assert os.path.isfile(os.path.join(root, "birds", "split_fewshot", "shot_1-seed_1.json"))


def test_the_recipe_reader_creates_a_missing_split(recipe, tmp_path):
    reader, make_tree = recipe
    root = make_tree(tmp_path / "data", with_split=False)
    created = reader(make_cfg(root, "Birds"))
    assert sorted(c.replace("_", " ") for c in created.classnames) == sorted(CLASSNAMES)
    assert os.path.isfile(os.path.join(root, "birds", "split_zhou_Birds.json"))


def test_the_recipe_reader_names_a_missing_folder_and_the_download(recipe, tmp_path):
    reader, _ = recipe
    with pytest.raises(DatasetNotFoundError, match="https://example.org/birds.tar.gz"):
        reader(make_cfg(tmp_path, "Birds"))
