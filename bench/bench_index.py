"""ImageNet index benchmark: reader construction on a 1000-class x 100-file tree.

    python bench/bench_index.py [--per-class 100] [--keep DIR]

Times ``ImageNet(cfg)`` twice: the first run scans the tree and writes the JSON index,
the second loads the cached index. Target: cached load under 2 s. Files are empty:
only the listing is measured.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from dassl.config import get_cfg_default  # noqa: E402

from datasets.imagenet import ImageNet  # noqa: E402
from tests.utils.fabricate import make_imagenet_tree  # noqa: E402


def timed_load(root: str) -> float:
    cfg = get_cfg_default()
    cfg.DATASET.ROOT = root
    cfg.DATASET.NAME = "ImageNet"
    start = time.perf_counter()
    dataset = ImageNet(cfg)
    elapsed = time.perf_counter() - start
    print(f"  {len(dataset.train_x)} train / {len(dataset.test)} test items, {dataset.num_classes} classes")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per-class", type=int, default=100)
    parser.add_argument("--keep", default=None, help="build the tree here (kept) instead of a temp dir")
    args = parser.parse_args()
    root = args.keep or tempfile.mkdtemp(prefix="bench_index_")
    start = time.perf_counter()
    make_imagenet_tree(root, n_train=args.per_class, n_val=0, empty=True)
    print(f"fabricated 1000 x {args.per_class} files in {time.perf_counter() - start:.1f} s under {root}")
    try:
        first = timed_load(root)
        cached = timed_load(root)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    print(f"first run (scan + write index): {first:.2f} s")
    print(f"cached run (read index):        {cached:.2f} s  (target < 2 s)")


if __name__ == "__main__":
    main()
