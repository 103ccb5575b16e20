"""Write the synthetic world's dataset tree, the one ``datasets/synthetic.py`` reads.

:func:`ensure_world` writes ``<root>/synthetic/`` (the images, ``split_zhou_Synthetic.json``
and ``world.json``) once, atomically, so that several processes may start at once; a folder
of another world version or seed is refused with the fix. ``train.py`` calls it on first use
of the ``Synthetic`` dataset (so the scripts generate the world too), and
``python -m tools.run_synthetic`` once before its runs start. From the command line::

    python -m tools.synthetic.generate --root $DATA                                 # the tree
    python -m tools.synthetic.generate --attributes attribute_data/synthetic.json   # the attribute file
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
from typing import Dict, List, Optional, Sequence

from PIL import Image

from datasets.synthetic import Synthetic
from tools.synthetic.attribute_file import write_attribute_file
from tools.synthetic.render import render_class_image
from tools.synthetic.world import ATTRIBUTE_VALUES, DEFAULT_SEED, WORLD_VERSION, World, build_world

# The layout the reader expects is the reader's: the generator writes what it reads.
FOLDER = Synthetic.dataset_dir  # <DATA>/synthetic/
IMAGE_DIR = Synthetic.image_subdir
SPLIT_FILE = Synthetic.split_filename
META_FILE = "world.json"

# Train / val / test images per class: 16-shot sampling needs >= 16 train images; 20 val
# images per class give 400 per 20-class half, enough to choose hyper-parameters (the
# linear probe's C); 40 test images per class give 800 per half (a 1-sigma error of about
# 1.7 points).
N_TRAIN, N_VAL, N_TEST = 20, 20, 40


def split_entries(world: World) -> Dict[str, List[list]]:
    """The split file's content: ``{"train"|"val"|"test": [[relpath, label, classname], ...]}``."""
    split: Dict[str, List[list]] = {"train": [], "val": [], "test": []}
    for c in world.classes:
        index = 0
        for part, count in (("train", N_TRAIN), ("val", N_VAL), ("test", N_TEST)):
            for _ in range(count):
                split[part].append([f"{c.name}/{c.name}_{index:04d}.png", c.label, c.name])
                index += 1
    return split


def _world_meta(world: World) -> dict:
    return {
        "version": WORLD_VERSION,
        "seed": world.seed,
        "classes": [
            {"label": c.label, "name": c.name, **{a: c.value(a) for a in ATTRIBUTE_VALUES}}
            for c in world.classes
        ],
    }


def _write_tree(world: World, dataset_dir: str) -> None:
    image_dir = os.path.join(dataset_dir, IMAGE_DIR)
    split = split_entries(world)
    for c in world.classes:
        os.makedirs(os.path.join(image_dir, c.name))
    index_of = {}
    for part in ("train", "val", "test"):
        for relpath, label, _ in split[part]:
            index_of[relpath] = (label, int(relpath.rsplit("_", 1)[1][:-4]))
    for relpath, (label, index) in index_of.items():
        Image.fromarray(render_class_image(world, label, index)).save(
            os.path.join(image_dir, relpath), format="PNG"
        )
    # The split file in exactly the format of CoOp's save_split (indent 4).
    with open(os.path.join(dataset_dir, SPLIT_FILE), "w") as f:
        json.dump(split, f, indent=4, separators=(",", ": "))
    with open(os.path.join(dataset_dir, META_FILE), "w") as f:
        json.dump(_world_meta(world), f, indent=2)


def check_world_dir(dataset_dir: str, world: World) -> None:
    """Raise if ``dataset_dir`` holds a world of another version or seed."""
    meta_path = os.path.join(dataset_dir, META_FILE)
    try:
        with open(meta_path) as f:
            meta = json.load(f)
    except (OSError, ValueError) as exc:
        raise RuntimeError(
            f"{dataset_dir} exists but has no readable {META_FILE} ({exc}); "
            f"delete the folder and it will be regenerated"
        ) from None
    if meta != _world_meta(world):
        raise RuntimeError(
            f"{dataset_dir} holds a synthetic world of version {meta.get('version')} / seed "
            f"{meta.get('seed')}, not version {WORLD_VERSION} / seed {world.seed}; delete the "
            f"folder (it is regenerated in seconds) or point DATASET.ROOT elsewhere"
        )


def ensure_world(root: str, seed: int = DEFAULT_SEED) -> str:
    """Generate the world under ``<root>/synthetic`` unless present; return that folder.

    The tree is written to a private temporary folder next to the target and renamed into
    place, so a reader never sees a half-written world; when two processes race, one
    rename wins and the other discards its copy.
    """
    world = build_world(seed)
    root = os.path.abspath(os.path.expanduser(root))
    dataset_dir = os.path.join(root, FOLDER)
    if os.path.isdir(dataset_dir):
        check_world_dir(dataset_dir, world)
        return dataset_dir
    try:
        os.makedirs(root, exist_ok=True)
        tmp = tempfile.mkdtemp(prefix=f".{FOLDER}-tmp-", dir=root)
    except OSError as exc:
        raise RuntimeError(
            f"cannot create the synthetic world under {root} ({exc}); set DATASET.ROOT "
            f"(the --root of train.py) to a writable folder"
        ) from None
    try:
        _write_tree(world, tmp)
        os.chmod(tmp, 0o755)  # mkdtemp makes it private
        try:
            os.rename(tmp, dataset_dir)
        except OSError:
            if not os.path.isdir(dataset_dir):
                raise
            # Another process renamed its copy first: use it.
    finally:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
    check_world_dir(dataset_dir, world)
    return dataset_dir


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description="Generate the synthetic world's files.")
    parser.add_argument("--attributes", help="write the attribute file here")
    parser.add_argument("--root", help="generate the image tree under ROOT/synthetic")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    args = parser.parse_args(argv)
    if not args.attributes and not args.root:
        parser.error("nothing to do: pass --attributes PATH and/or --root DIR")
    world = build_world(args.seed)
    if args.attributes:
        write_attribute_file(args.attributes, world)
        print(f"Wrote {args.attributes}")
    if args.root:
        print(f"World at {ensure_world(args.root, args.seed)}")


if __name__ == "__main__":
    main()
