"""The image-feature cache on disk (docs/feature-cache.md): what it holds, and clearing it.

    python -m tools.cache info  [--dir DIR]
    python -m tools.cache clear [--dir DIR] [--dataset NAME]

``DIR`` defaults to where runs put it when ``FEATURE_CACHE.DIR`` is empty:
``$SEMPT_CACHE_DIR/features`` or ``~/.cache/sempt/features``. ``info`` lists, per
computation (backbone, precision, device) and dataset, the evaluation features and the
training features of each seed (with their epochs), with their size on disk. ``clear``
deletes everything, or one dataset's features (``DATASET.NAME``, e.g. ``Caltech101``).
Deleting is always safe: what a run misses it computes again.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from collections import defaultdict
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from tabulate import tabulate

from dassl.features.store import CorruptShard, FeatureStore, read_shard_header
from trainers.common.cache_identity import default_feature_cache_dir

TRAIN_GROUP = re.compile(r"^(?P<dataset>[^/]+)/train/(?P<seed>[^/]+)/epoch(?P<epoch>\d+)$")


def human_size(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def describe_computation(store: FeatureStore, compute_id: str) -> str:
    """What a computation id stands for (its ``compute.json``)."""
    try:
        desc = json.loads((store.base / compute_id / "compute.json").read_text())
    except (OSError, ValueError):
        return "(no description)"
    return (f"{desc.get('backbone')}, {desc.get('precision')}, chunk {desc.get('chunk')}, "
            f"{desc.get('device')}, torch {desc.get('torch')}")


def info_rows(store: FeatureStore) -> List[List[str]]:
    """One row per (computation, dataset, eval | training seed)."""
    totals: Dict[tuple, Dict[str, object]] = defaultdict(lambda: {"shards": 0, "rows": 0, "size": 0, "epochs": set()})
    for shard in store.shards():
        match = TRAIN_GROUP.match(shard.group)
        if match:
            key = (shard.compute_id, match["dataset"], f"train {match['seed']}")
        else:
            key = (shard.compute_id, shard.group.split("/")[0], shard.group.split("/", 1)[-1])
        entry = totals[key]
        entry["shards"] += 1
        entry["size"] += shard.size
        try:
            entry["rows"] += read_shard_header(shard.path)["rows"]
        except (OSError, CorruptShard):
            pass  # reported (and deleted) when a run reads it
        if match:
            entry["epochs"].add(int(match["epoch"]))
    rows = []
    for (compute_id, dataset, group), entry in sorted(totals.items()):
        epochs = sorted(entry["epochs"])
        span = f"{len(epochs)} epochs ({epochs[0]}-{epochs[-1]})" if epochs else ""
        rows.append([compute_id, dataset, group, span, entry["rows"], entry["shards"], human_size(entry["size"])])
    return rows


def cmd_info(store: FeatureStore) -> int:
    shards = store.shards()
    print(f"Image-feature cache: {store.root}")
    if not shards:
        print("(empty)")
        return 0
    for compute_id in sorted({s.compute_id for s in shards}):
        print(f"{compute_id}: {describe_computation(store, compute_id)}")
    headers = ["computation", "dataset", "features", "epochs", "rows", "shards", "size"]
    print(tabulate(info_rows(store), headers=headers))
    print(f"Total: {len(shards)} shards, {human_size(sum(s.size for s in shards))}")
    return 0


def cmd_clear(store: FeatureStore, dataset: Optional[str]) -> int:
    count = store.clear(dataset)
    what = f"the features of {dataset}" if dataset else "all features"
    print(f"Deleted {what} from {store.root} ({count} shards)")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("info", "clear"):
        cmd = sub.add_parser(name)
        cmd.add_argument("--dir", default="", help="cache folder (default: $SEMPT_CACHE_DIR/features or ~/.cache/sempt/features)")
        if name == "clear":
            cmd.add_argument("--dataset", default=None, help="only this dataset (DATASET.NAME, e.g. Caltech101)")
    args = parser.parse_args(argv)
    store = FeatureStore(Path(args.dir) if args.dir else default_feature_cache_dir())
    if args.command == "info":
        return cmd_info(store)
    return cmd_clear(store, args.dataset)


if __name__ == "__main__":
    sys.exit(main())
