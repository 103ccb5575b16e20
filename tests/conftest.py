"""Put the repository root on ``sys.path``: ``datasets``/``trainers``/``train.py`` are used from there."""
import os
import sys

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

import pytest  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def _project_cache_in_a_temporary_folder(tmp_path_factory):
    """Runs cache description embeddings and image features under $SEMPT_CACHE_DIR
    (trainers/common/cache_identity.py): tests use a folder of their own, never the user's."""
    previous = os.environ.get("SEMPT_CACHE_DIR")
    os.environ["SEMPT_CACHE_DIR"] = str(tmp_path_factory.mktemp("sempt_cache"))
    yield
    if previous is None:
        os.environ.pop("SEMPT_CACHE_DIR", None)
    else:
        os.environ["SEMPT_CACHE_DIR"] = previous


@pytest.fixture(scope="session")
def synthetic_data_root(tmp_path_factory) -> str:
    """A data root holding the built-in synthetic world, generated once per test session."""
    from tools.synthetic.generate import ensure_world

    root = tmp_path_factory.mktemp("synthetic_data")
    ensure_world(str(root))
    return str(root)
