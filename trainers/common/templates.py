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

# The 60 ImageNet templates PromptSRC ships (muzairkhattak/PromptSRC
# trainers/imagenet_templates.py, taken from OpenAI's CLIP notebook
# Prompt_Engineering_for_ImageNet.ipynb): its frozen text teacher, for every dataset.
IMAGENET_TEMPLATES: List[str] = [
    "a photo of a {}.",
    "a bad photo of a {}.",
    "a photo of many {}.",
    "a sculpture of a {}.",
    "a photo of the hard to see {}.",
    "a low resolution photo of the {}.",
    "a rendering of a {}.",
    "graffiti of a {}.",
    "a bad photo of the {}.",
    "a cropped photo of the {}.",
    "a tattoo of a {}.",
    "the embroidered {}.",
    "a photo of a hard to see {}.",
    "a bright photo of a {}.",
    "a photo of a clean {}.",
    "a photo of a dirty {}.",
    "a dark photo of the {}.",
    "a drawing of a {}.",
    "a photo of my {}.",
    "the plastic {}.",
    "a photo of the cool {}.",
    "a close-up photo of a {}.",
    "a black and white photo of the {}.",
    "a painting of the {}.",
    "a painting of a {}.",
    "a pixelated photo of the {}.",
    "a sculpture of the {}.",
    "a bright photo of the {}.",
    "a cropped photo of a {}.",
    "a plastic {}.",
    "a photo of the dirty {}.",
    "a jpeg corrupted photo of a {}.",
    "a blurry photo of the {}.",
    "a photo of the {}.",
    "a good photo of the {}.",
    "a rendering of the {}.",
    "a {} in a video game.",
    "a photo of one {}.",
    "a doodle of a {}.",
    "a close-up photo of the {}.",
    "the origami {}.",
    "the {} in a video game.",
    "a sketch of a {}.",
    "a doodle of the {}.",
    "a origami {}.",
    "a low resolution photo of a {}.",
    "the toy {}.",
    "a rendition of the {}.",
    "a photo of the clean {}.",
    "a photo of a large {}.",
    "a rendition of a {}.",
    "a photo of a nice {}.",
    "a photo of a weird {}.",
    "a blurry photo of a {}.",
    "a cartoon {}.",
    "art of a {}.",
    "a sketch of the {}.",
    "a embroidered {}.",
    "a pixelated photo of a {}.",
    "itap of the {}.",
]

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
    "IMAGENET_TEMPLATES",
    "IMAGENET_TEMPLATES_SELECT",
    "template_for",
]
