"""Put the repository root on ``sys.path``: ``datasets``/``trainers``/``train.py`` are used from there."""
import os
import sys

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def synthetic_data_root(tmp_path_factory) -> str:
    """A data root holding the built-in synthetic world, generated once per test session."""
    from datasets.synthetic_world import ensure_world

    root = tmp_path_factory.mktemp("synthetic_data")
    ensure_world(str(root))
    return str(root)
