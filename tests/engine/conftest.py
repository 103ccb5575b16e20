"""Fixtures for the engine tests; importing ``engine_toy`` registers the toy dataset/trainer."""
import pytest

from tests.engine.engine_toy import make_toy_tree


@pytest.fixture
def toy_root(tmp_path) -> str:
    return make_toy_tree(str(tmp_path / "data"))
