"""DCLIP: classification by description (Menon & Vondrick, ICLR 2023; upstream
sachit-menon/classify_by_description_release).

Zero-shot: the score of class ``c`` is the mean, over the class's descriptions ``d``, of
``cos(f(x), e_d)``, i.e. ``<f̂(x), mean_d ê_d>`` with the mean *not* renormalised
(upstream ``main.py``: ``image_encodings @ v.T`` then ``.mean(dim=1)``), so a class whose
descriptions disagree gets a shorter vector and lower scores. That is the difference
from CuPL, which renormalises.

Adaptations (docs/upstream-differences.md, "DCLIP"): the descriptions are this
repository's attribute sentences, which already name their class, so upstream's
"{class}, which has {descriptor}" frame applies only to an upstream descriptor file
(``ATTRIBUTE_FILE`` pointing to e.g. ``descriptors/descriptors_dtd.json``); scores are
multiplied by CLIP's logit scale (argmax unchanged). Nothing trains.
"""
from __future__ import annotations

from typing import List

from dassl.engine import TRAINER_REGISTRY

from .config import register_config
from .parts.description_classifier import DescriptionClassifier, description_config_node

# First words after which upstream's frame reads "which is ..." / "which ...";
# anything else gets "which has ..." (upstream loading_helpers.py, make_descriptor_sentence).
WHICH_IS_WORDS = ("a", "an", "used")
WHICH_WORDS = ("has", "often", "typically", "may", "can")


@register_config
def dclip_config(cfg) -> None:
    cfg.TRAINER.DCLIP = description_config_node(prec="fp16")  # upstream: clip.load(jit=False), fp16 on CUDA
    # Upstream's frame for descriptor files (load.py hparams before_text / between_text /
    # after_text; upstream sets AFTER_TEXT "." for ImageNet only). Unused for attribute files.
    cfg.TRAINER.DCLIP.BEFORE_TEXT = ""
    cfg.TRAINER.DCLIP.BETWEEN_TEXT = ", "
    cfg.TRAINER.DCLIP.AFTER_TEXT = ""


def descriptor_clause(descriptor: str) -> str:
    """Upstream's rewrite of a descriptor into a relative clause, decided on its first
    *word* (upstream tests the first characters, so "antennae" became "which is antennae")."""
    words = descriptor.split(maxsplit=1)
    first = words[0] if words else ""
    if first in WHICH_IS_WORDS:
        return f"which is {descriptor}"
    if first in WHICH_WORDS:
        return f"which {descriptor}"
    return f"which has {descriptor}"


@TRAINER_REGISTRY.register()
class DCLIP(DescriptionClassifier):
    CFG_NODE = "DCLIP"
    RENORMALIZE = False

    def upstream_sentences(self, name: str, texts: List[str]) -> List[str]:
        """``{BEFORE}{class}{BETWEEN}{clause(d)}{AFTER}`` per descriptor; a class without
        descriptors keeps one empty descriptor, as upstream."""
        node = self.method_cfg
        classname = name.replace("_", " ")
        return [
            f"{node.BEFORE_TEXT}{classname}{node.BETWEEN_TEXT}{descriptor_clause(d)}{node.AFTER_TEXT}"
            for d in (texts or [""])
        ]
