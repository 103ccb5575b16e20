"""Hand-crafted prompt templates (data, as published with CoOp and KgCoOp)."""
from __future__ import annotations

from typing import Dict, List

DEFAULT_TEMPLATE = "a photo of a {}."

# Zero-shot CLIP templates per DATASET.NAME (CoOp's zsclip).
CUSTOM_TEMPLATES: Dict[str, str] = {
    "OxfordPets": "a photo of a {}, a type of pet.",
    "OxfordFlowers": "a photo of a {}, a type of flower.",
    "FGVCAircraft": "a photo of a {}, a type of aircraft.",
    "DescribableTextures": "{} texture.",
    "EuroSAT": "a centered satellite photo of {}.",
    "StanfordCars": "a photo of a {}.",
    "Food101": "a photo of {}, a type of food.",
    "SUN397": "a photo of a {}.",
    "Caltech101": "a photo of a {}.",
    "UCF101": "a photo of a person doing {}.",
    "ImageNet": "a photo of a {}.",
    "ImageNetSketch": "a photo of a {}.",
    "ImageNetV2": "a photo of a {}.",
    "ImageNetA": "a photo of a {}.",
    "ImageNetR": "a photo of a {}.",
    "Synthetic": "a photo of a {}.",  # the built-in world (datasets/SYNTHETIC.md)
}

# KgCoOp's knowledge-guidance templates: the same except for DTD.
CUSTOM_TEMPLATES_KG: Dict[str, str] = {
    **CUSTOM_TEMPLATES,
    "DescribableTextures": "a photo of a {}, a type of texture.",
}

# The 7-template ensemble of ZeroshotCLIP2 (CoOp's zsclip).
IMAGENET_TEMPLATES_SELECT: List[str] = [
    "itap of a {}.",
    "a bad photo of the {}.",
    "a origami {}.",
    "a photo of the large {}.",
    "a {} in a video game.",
    "art of the {}.",
    "a photo of the small {}.",
]


def template_for(dataset_name: str, table: Dict[str, str] = CUSTOM_TEMPLATES) -> str:
    """The template of a dataset in ``table``; datasets not listed get ``"a photo of a {}."``.

    The fallback lets new datasets run without code changes; add an entry to the
    table for a dataset-specific wording.
    """
    template = table.get(dataset_name)
    if template is None:
        print(f'No prompt template registered for dataset "{dataset_name}"; using "{DEFAULT_TEMPLATE}"')
        return DEFAULT_TEMPLATE
    return template


__all__ = [
    "DEFAULT_TEMPLATE",
    "CUSTOM_TEMPLATES",
    "CUSTOM_TEMPLATES_KG",
    "IMAGENET_TEMPLATES_SELECT",
    "template_for",
]
