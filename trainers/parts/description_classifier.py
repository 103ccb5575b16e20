"""Zero-shot classifiers over LLM descriptions of each class: the base of DCLIP and CuPL.

Every sentence describing class ``c`` is encoded once by the frozen CLIP text encoder
(cached on disk per sentence and backbone, ``description_bank``) and L2-normalised; the
class vector is their mean, renormalised (CuPL) or not (DCLIP), and an image scores
``logit_scale * <f(x), w_c>`` against it. Nothing trains.

Where the sentences come from (``TRAINER.<NODE>.ATTRIBUTE_FILE``):

* an attribute file (``attribute_data/<dataset>.json``, the default): all sentences of
  the class, every shared attribute, in the file's attribute order. They are full
  sentences that already name the class, so they are used as they are;
* an upstream description file: a JSON object ``class name -> list of strings`` (DCLIP's
  ``descriptors/descriptors_<dataset>.json``, CuPL's ``all_prompts/*.json``). Classes
  are matched by normalised name; a subclass may rewrite the strings
  (:meth:`DescriptionClassifier.upstream_sentences`, DCLIP's "{class}, which ..." frame).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import ClassVar, Dict, List, Optional, Sequence, Tuple

from torch import nn

from dassl.config import CfgNode

from ..common.model import FixedTextCLIP
from ..common.text_encoder import TextEncoder
from ..common.trainer import PromptTrainer
from .attributes import (
    AttributeDataError,
    find_attribute_file,
    load_attribute_file,
    match_classes,
    normalize_classname,
)
from .description_bank import SentenceEmbeddingCache, encode_descriptions


def description_config_node(prec: str = "fp16") -> CfgNode:
    """The keys every description classifier reads."""
    node = CfgNode()
    node.PREC = prec  # fp16, fp32, amp or bf16 (GPU); the CPU always runs fp32
    node.ATTRIBUTE_FILE = ""  # "" = attribute_data/<dataset>.json; or an upstream class -> sentences JSON
    node.DESC_CACHE_DIR = ""  # "" = $SEMPT_CACHE_DIR/descriptions or ~/.cache/sempt/descriptions
    return node


def is_upstream_description_file(data: object) -> bool:
    """Whether parsed JSON is a plain ``{class name: [strings]}`` object (not an attribute file)."""
    return (
        isinstance(data, dict)
        and bool(data)
        and all(isinstance(v, list) and all(isinstance(s, str) for s in v) for v in data.values())
    )


def match_upstream_descriptions(
    descriptions: Dict[str, List[str]], classnames: Sequence[str], source: str, config_key: str
) -> List[Tuple[str, List[str]]]:
    """``(name as the file spells it, its strings)`` for each class, in label order.

    Names are compared after ``normalize_classname``; a missing class is an error that
    lists every missing one (upstream DCLIP selects classes with a bare ``dict[name]`` and
    stops at the first ``KeyError``).
    """
    by_name = {normalize_classname(name): (name, list(texts)) for name, texts in descriptions.items()}
    missing = [f'{i}: "{c}"' for i, c in enumerate(classnames) if normalize_classname(c) not in by_name]
    if missing:
        raise AttributeDataError(
            f"{source} has no descriptions for {len(missing)} of this dataset's {len(classnames)} classes:\n  - "
            + "\n  - ".join(missing)
            + f"\nAdd them to the file (class names are compared in lower case, '_' as space) or point "
            f"{config_key} to a file that has them."
        )
    return [by_name[normalize_classname(c)] for c in classnames]


class DescriptionClassifier(PromptTrainer):
    """Zero-shot CLIP with class vectors pooled from description sentences (see the module docstring).

    A subclass sets ``CFG_NODE`` (a node made by :func:`description_config_node`) and
    ``RENORMALIZE``.
    """

    #: True: ``w_c = normalize(mean_s normalize(e_s))`` (CuPL); False: the mean itself (DCLIP).
    RENORMALIZE: ClassVar[bool] = True

    @property
    def attribute_file_key(self) -> str:
        return f"TRAINER.{self.CFG_NODE}.ATTRIBUTE_FILE"

    def upstream_sentences(self, name: str, texts: List[str]) -> List[str]:
        """The sentences encoded for one class of an upstream description file (``name`` as the
        file spells it). Default: the strings as they are (CuPL's prompts are sentences)."""
        return texts

    def class_sentences(self, cfg, classnames: Sequence[str]) -> List[List[str]]:
        """Every sentence describing each class, in label order (see the module docstring)."""
        key = self.attribute_file_key
        path = find_attribute_file(cfg.DATASET.NAME, self.method_cfg.ATTRIBUTE_FILE, config_key=key)
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise AttributeDataError(f"{path} ({key}) is not a readable JSON file: {err}") from None
        if is_upstream_description_file(data):
            matched = match_upstream_descriptions(data, classnames, str(path), key)
            sentences = [self.upstream_sentences(name, texts) for name, texts in matched]
            kind = "upstream class -> sentences file"
        else:
            try:
                attr_file = load_attribute_file(path)
            except AttributeDataError as err:
                raise AttributeDataError(
                    f"{err}\n{key} takes an attribute file or an upstream description file: a JSON object "
                    "class name -> list of sentences"
                ) from None
            wnids: Optional[Sequence[str]] = getattr(self.dm.dataset, "wnids", None)
            entries = match_classes(attr_file, classnames, wnids=wnids, config_key=key)
            sentences = [
                [s for per_attribute in entry.sentences(attr_file.attribute_names) for s in per_attribute]
                for entry in entries
            ]
            kind = f"attribute file, {len(attr_file.attributes)} attributes"
        empty = [f'{i}: "{c}"' for i, (c, s) in enumerate(zip(classnames, sentences)) if not any(t.strip() for t in s)]
        if empty:
            raise AttributeDataError(
                f"{path} gives no sentence for class(es) {', '.join(empty)}; add descriptions or point {key} "
                "to a file that has them"
            )
        total = sum(len(s) for s in sentences)
        print(f"Descriptions: {path} ({kind}; {total} sentences for {len(classnames)} classes)")
        print(f'Example for class "{classnames[0]}": "{sentences[0][0]}"')
        return sentences

    def build_custom_model(self, cfg, classnames: Sequence[str], clip_model: nn.Module) -> nn.Module:
        sentences = self.class_sentences(cfg, classnames)
        cache = SentenceEmbeddingCache.for_backbone(
            cfg.MODEL.BACKBONE.NAME, self.precision.compute_dtype, self.method_cfg.DESC_CACHE_DIR,
            clip_model=clip_model, variant=self.precision.cache_variant(),
        )
        text_encoder = TextEncoder(clip_model).to(self.device)
        with self.precision.autocast():
            # One group per class: the pooled vector is over all of the class's sentences.
            pooled = encode_descriptions(text_encoder, [[s] for s in sentences], cache, renormalize=self.RENORMALIZE)
        return FixedTextCLIP(clip_model, pooled[:, 0].to(device=self.device, dtype=clip_model.dtype))

    def trainable_modules(self) -> Dict[str, nn.Module]:
        return {}


__all__ = [
    "DescriptionClassifier",
    "description_config_node",
    "is_upstream_description_file",
    "match_upstream_descriptions",
]
