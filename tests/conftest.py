"""Put the repository root on ``sys.path``: ``datasets``/``trainers``/``train.py`` are used from there."""
import os
import sys

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)
