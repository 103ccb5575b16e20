"""The synthetic world's words: a phrase list per attribute value, and the captions the tiny
CLIP is pretrained on (``tools/synthetic/pretrain_tiny_clip.py``).

The description sentences of the attribute file (``tools/synthetic/attribute_file.py``) use
the same phrases in other sentence frames.
"""
from __future__ import annotations

from typing import Dict, Optional, Tuple

import numpy as np

from tools.synthetic.world import VISIBLE_ATTRIBUTES

# Phrases per attribute value. The pretraining captions and the description sentences use
# the same words for a value (a shared vocabulary, as web captions and LLM descriptions share
# English) but different sentence frames.
VALUE_PHRASES: Dict[str, Dict[str, Tuple[str, ...]]] = {
    "shape": {
        "circle": ("round", "circular", "shaped like a circle", "round like a disc"),
        "square": ("square", "boxy", "shaped like a square", "square with four equal sides"),
        "triangle": ("triangular", "three-cornered", "shaped like a triangle", "pointed like a triangle"),
        "star": ("star-shaped", "spiky", "shaped like a star", "star-like with five arms"),
        "hexagon": ("hexagonal", "six-sided", "shaped like a hexagon", "hexagonal with six edges"),
    },
    "colour": {
        "red": ("red", "bright red", "scarlet red", "tomato red"),
        "yellow": ("yellow", "bright yellow", "golden yellow", "lemon yellow"),
        "green": ("green", "leaf green", "grassy green", "bright green"),
        "blue": ("blue", "deep blue", "royal blue", "sea blue"),
        "purple": ("purple", "violet", "deep purple", "plum purple"),
    },
    "pattern": {
        "plain": ("plain", "smooth and unmarked", "plain without markings", "free of any markings"),
        "striped": ("striped", "covered in stripes", "marked with dark stripes", "banded with dark stripes"),
        "dotted": ("dotted", "covered in dots", "marked with dark spots", "speckled with small dots"),
    },
    "size": {
        "small": ("small", "tiny", "little", "very small"),
        "large": ("large", "big", "huge", "very large"),
    },
    "habitat": {
        "desert": ("deserts", "dry sandy deserts"),
        "forest": ("forests", "dense forests"),
        "swamp": ("swamps", "muddy swamps"),
        "mountains": ("the mountains", "high rocky mountains"),
        "river banks": ("river banks", "the banks of slow rivers"),
    },
    "diet": {
        "seeds": ("seeds", "small seeds"),
        "insects": ("insects", "beetles and other insects"),
        "fruit": ("fruit", "ripe fallen fruit"),
        "fish": ("fish", "small fish"),
        "leaves": ("leaves", "fresh leaves"),
    },
}


def name_forms(name: str) -> Dict[str, str]:
    """The name with its indefinite article ("a vorlick", "an umbrix")."""
    an = ("an " if name[0] in "aeiou" else "a ") + name
    return {"n": name, "an": an, "An": an[0].upper() + an[1:]}


# Caption frames of the pretraining "web": without and with the class name.
_CAPTION_FRAMES = (
    "a photo of a {a} thing.",
    "a {a} object.",
    "a picture of something {a}.",
    "this creature is {a}.",
    "an image of a {a} creature.",
    "a drawing of a {a} shape.",
)
_NAMED_FRAMES = (
    "a photo of {an}.",
    "a photo of {an}, which is {a}.",
    "a {n}: {a}.",
    "this is {an}. it is {a}.",
    "a {a} {n}.",
)


def caption_for(
    values: Dict[str, str], rng: np.random.Generator, name: Optional[str] = None
) -> Tuple[str, Tuple[str, ...]]:
    """A varied caption describing a random non-empty subset of the visible attributes.

    Returns the caption and the attributes it describes. With ``name`` the caption
    mentions the class name (pretraining decides how often); some named frames use only it.
    """
    k = rng.integers(1, len(VISIBLE_ATTRIBUTES) + 1)
    chosen = [VISIBLE_ATTRIBUTES[i] for i in sorted(rng.permutation(len(VISIBLE_ATTRIBUTES))[:k])]
    order = rng.permutation(len(chosen))
    parts = []
    for i in order:
        attr = chosen[i]
        phrases = VALUE_PHRASES[attr][values[attr]]
        parts.append(phrases[rng.integers(len(phrases))])
    if len(parts) == 1:
        described = parts[0]
    else:
        joiner = (", ", " and ", " ")[rng.integers(3)]
        described = joiner.join(parts[:-1]) + (" and " if joiner == ", " else joiner) + parts[-1]
    frames = _NAMED_FRAMES if name else _CAPTION_FRAMES
    forms = name_forms(name) if name else {}
    return frames[rng.integers(len(frames))].format(a=described, **forms), tuple(chosen)

