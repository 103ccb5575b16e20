"""The synthetic world's attribute file (``attribute_data/synthetic.json``, in the format of
``attribute_data/README.md``), written from the world's ground truth by rules, not by a
language model.

    python -m tools.synthetic.generate --attributes attribute_data/synthetic.json
"""
from __future__ import annotations

import json
from typing import Dict, Optional, Tuple

import numpy as np

from tools.synthetic.language import VALUE_PHRASES, name_forms
from tools.synthetic.world import HIDDEN_ATTRIBUTES, VISIBLE_ATTRIBUTES, WORLD_VERSION, World, build_world

ATTRIBUTE_DEFINITIONS: Dict[str, str] = {
    "shape": "the outline of the creature's body",
    "colour": "the main colour of the body",
    "pattern": "the markings on the body surface: plain, stripes or dots",
    "size": "how large the body appears in the picture",
    "habitat": "where the creature lives (not visible in the picture)",
    "diet": "what the creature eats (not visible in the picture)",
}

# Description frames per attribute: {an}/{An} = the class name with its article, {p} = a
# value phrase. Which frame and phrase a class gets is drawn from the seed, so sentences
# are not copies of one template.
DESCRIPTION_FRAMES: Dict[str, Tuple[str, ...]] = {
    "shape": (
        "{An} has a body that is {p}.",
        "The outline of {an} looks {p}.",
        "Seen from above, {an} is {p}.",
    ),
    "colour": (
        "{An} is {p} all over.",
        "The body of {an} is coloured {p}.",
        "{An} has a {p} body.",
    ),
    "pattern": (
        "The surface of {an} is {p}.",
        "{An} has a body that is {p}.",
        "The skin of {an} is {p}.",
    ),
    "size": (
        "{An} is {p}.",
        "In a photo, {an} looks {p}.",
        "Next to its surroundings {an} appears {p}.",
    ),
    "habitat": (
        "{An} lives in {p}.",
        "{An} is usually found in {p}.",
    ),
    "diet": (
        "{An} feeds on {p}.",
        "The usual food of {an} is {p}.",
    ),
}


# Fixed, so that regenerating the file from the same version gives the same bytes.
_ATTRIBUTE_FILE_DATE = "2026-11-24"


def build_attribute_data(world: Optional[World] = None) -> dict:
    """The attribute file (``attribute_data/README.md`` format) from the world's ground truth."""
    world = world or build_world()
    rng = np.random.default_rng([WORLD_VERSION, world.seed, 2])
    attributes = list(VISIBLE_ATTRIBUTES) + list(HIDDEN_ATTRIBUTES)
    classes = []
    for c in world.classes:
        descriptions = {}
        for attr in attributes:
            frames = DESCRIPTION_FRAMES[attr]
            phrases = VALUE_PHRASES[attr][c.value(attr)]
            frame = frames[rng.integers(len(frames))]
            phrase = phrases[rng.integers(len(phrases))]
            descriptions[attr] = [frame.format(p=phrase, **name_forms(c.name))]
        classes.append({"name": c.name, "descriptions": descriptions})
    return {
        "dataset": "Synthetic",
        "domain": "invented creatures drawn as simple coloured shapes",
        "attributes": [{"name": a, "definition": ATTRIBUTE_DEFINITIONS[a]} for a in attributes],
        "classes": classes,
        "generator": {
            "procedure": "generated from the synthetic world's ground truth by "
            "tools/synthetic/attribute_file.py (write_attribute_file), not by a language model",
            "model": "none (rule-based templates)",
            "date": _ATTRIBUTE_FILE_DATE,
            "notes": f"world version {WORLD_VERSION}, seed {world.seed}. 'habitat' and 'diet' "
            "are assigned at random per class and are NOT visible in the images: the visual "
            "weighting should learn to ignore them.",
        },
    }


def write_attribute_file(path: str, world: Optional[World] = None) -> None:
    """Write :func:`build_attribute_data` to ``path`` (JSON, indent 2, final newline)."""
    with open(path, "w") as f:
        json.dump(build_attribute_data(world), f, indent=2)
        f.write("\n")

