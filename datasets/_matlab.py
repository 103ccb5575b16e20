"""Reading MATLAB ``.mat`` annotation files (only needed to create a missing split)."""
from typing import Any, Dict


def loadmat(path: str) -> Dict[str, Any]:
    try:
        from scipy.io import loadmat as _loadmat
    except ImportError as err:  # scipy is only needed on this rare path
        raise ImportError(
            f"Reading {path} needs scipy (pip install scipy); or download the official "
            "split file instead: python -m tools.data download-splits"
        ) from err
    return _loadmat(path)
