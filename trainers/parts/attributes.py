"""Attribute knowledge files (``attribute_data/<dataset>.json``): load, check, match.

An attribute file holds, for one dataset, the K visual attributes its classes share and,
for every class, one or more sentences per attribute (format: ``attribute_data/README.md``).
The SemPT trainer reads it through :func:`find_attribute_file`, :func:`load_attribute_file`
and :func:`match_classes`; ``tools/generate_attributes.py`` writes it and checks it with
:func:`validate_attribute_file`.

No torch at import time: the CLIP tokenizer (which imports torch through ``clip``) is
loaded only when token lengths are measured.
"""
from __future__ import annotations

import hashlib
import json
import re
from collections import defaultdict
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Optional, Sequence

__all__ = [
    "ATTRIBUTE_DATA_ROOT",
    "PROMPTS_DIR",
    "PROMPT_FILES",
    "DATASET_FILES",
    "MIN_ATTRIBUTES",
    "MAX_ATTRIBUTES",
    "AttributeDataError",
    "Attribute",
    "ClassEntry",
    "AttributeFile",
    "load_attribute_file",
    "normalize_classname",
    "assign_classes",
    "match_classes",
    "find_attribute_file",
    "validate_attribute_file",
    "validate_class_descriptions",
    "names_class",
    "count_clip_tokens",
    "prompt_hashes",
]

REPO_ROOT = Path(__file__).resolve().parents[2]
ATTRIBUTE_DATA_ROOT = REPO_ROOT / "attribute_data"
PROMPTS_DIR = ATTRIBUTE_DATA_ROOT / "prompts"
PROMPT_FILES = ("step1_attributes.txt", "step2_descriptions.txt")

# K, the number of shared attributes per dataset (step 1 of attribute_data/prompts asks for 4 to 8).
MIN_ATTRIBUTES = 4
MAX_ATTRIBUTES = 8

# DATASET.NAME (the reader's registry name) -> attribute file stem (the config name).
# The ImageNet variants share ImageNet's file; -A/-R pick their 200 classes by wnid.
DATASET_FILES = {
    "ImageNet": "imagenet",
    "ImageNetV2": "imagenet",
    "ImageNetSketch": "imagenet",
    "ImageNetA": "imagenet",
    "ImageNetR": "imagenet",
    "Caltech101": "caltech101",
    "OxfordPets": "oxford_pets",
    "StanfordCars": "stanford_cars",
    "OxfordFlowers": "oxford_flowers",
    "Food101": "food101",
    "FGVCAircraft": "fgvc_aircraft",
    "SUN397": "sun397",
    "DescribableTextures": "dtd",
    "EuroSAT": "eurosat",
    "UCF101": "ucf101",
    "Synthetic": "synthetic",
}

# The config key error messages name by default (each trainer passes its own ``config_key``).
_CONFIG_KEY = "TRAINER.SEMPT.ATTRIBUTE_FILE"


class AttributeDataError(ValueError):
    """An attribute file is unreadable, malformed, or does not cover a dataset's classes."""


@dataclass(frozen=True)
class Attribute:
    name: str
    definition: str


@dataclass
class ClassEntry:
    """One class of an attribute file: its name, optional wnid, and sentences per attribute."""

    name: str
    descriptions: dict[str, list[str]]
    id: Optional[str] = None

    def sentences(self, attribute_names: Sequence[str]) -> list[list[str]]:
        """The sentences of each attribute, in the given attribute order."""
        return [list(self.descriptions[a]) for a in attribute_names]


@dataclass
class AttributeFile:
    dataset: str
    domain: str
    attributes: list[Attribute]
    classes: list[ClassEntry]
    generator: dict[str, Any] = field(default_factory=dict)
    path: str = ""

    @property
    def attribute_names(self) -> list[str]:
        return [a.name for a in self.attributes]

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (the file format); ``path`` is not part of it."""
        classes = []
        for c in self.classes:
            entry: dict[str, Any] = {"name": c.name}
            if c.id is not None:
                entry["id"] = c.id
            entry["descriptions"] = {k: list(v) for k, v in c.descriptions.items()}
            classes.append(entry)
        return {
            "dataset": self.dataset,
            "domain": self.domain,
            "attributes": [{"name": a.name, "definition": a.definition} for a in self.attributes],
            "classes": classes,
            "generator": dict(self.generator),
        }


# --------------------------------------------------------------------------- loading

_TOP_KEYS = {"dataset", "domain", "attributes", "classes", "generator"}
_CLASS_KEYS = {"name", "id", "descriptions"}


def _schema_errors(data: Any) -> list[str]:
    """Every structural problem of a parsed attribute file (empty list: well-formed)."""
    if not isinstance(data, dict):
        return [f"the top level must be a JSON object, got {type(data).__name__}"]
    errors = []
    unknown = sorted(set(data) - _TOP_KEYS)
    if unknown:
        errors.append(f"unknown top-level key(s) {unknown}; allowed: {sorted(_TOP_KEYS)}")
    for key in ("dataset", "domain"):
        if not isinstance(data.get(key), str) or not data[key].strip():
            errors.append(f'"{key}" must be a non-empty string')
    if "generator" in data and not isinstance(data["generator"], dict):
        errors.append('"generator" must be an object')

    attributes = data.get("attributes")
    if not isinstance(attributes, list) or not attributes:
        errors.append('"attributes" must be a non-empty list of {"name", "definition"} objects')
    else:
        seen = set()
        for i, a in enumerate(attributes):
            if not isinstance(a, dict) or set(a) != {"name", "definition"}:
                errors.append(f'attributes[{i}] must be an object with exactly "name" and "definition"')
                continue
            if not isinstance(a["name"], str) or not a["name"].strip():
                errors.append(f"attributes[{i}].name must be a non-empty string")
            elif a["name"] in seen:
                errors.append(f'attributes[{i}].name "{a["name"]}" is repeated')
            else:
                seen.add(a["name"])
            if not isinstance(a["definition"], str):
                errors.append(f"attributes[{i}].definition must be a string")

    classes = data.get("classes")
    if not isinstance(classes, list) or not classes:
        errors.append('"classes" must be a non-empty list (label order), not a dict: names repeat in ImageNet')
        return errors
    for i, c in enumerate(classes):
        where = f"classes[{i}]"
        if not isinstance(c, dict):
            errors.append(f"{where} must be an object")
            continue
        unknown = sorted(set(c) - _CLASS_KEYS)
        if unknown:
            errors.append(f"{where} has unknown key(s) {unknown}; allowed: {sorted(_CLASS_KEYS)}")
        if not isinstance(c.get("name"), str) or not c["name"].strip():
            errors.append(f'{where}.name must be a non-empty string')
        else:
            where = f'{where} ("{c["name"]}")'
        if "id" in c and not isinstance(c["id"], str):
            errors.append(f"{where}.id must be a string (a WordNet id such as n01440764)")
        desc = c.get("descriptions")
        if not isinstance(desc, dict):
            errors.append(f"{where}.descriptions must be an object: attribute name -> list of sentences")
            continue
        for attr, sentences in desc.items():
            if not isinstance(sentences, list) or not all(isinstance(s, str) for s in sentences):
                errors.append(f'{where}.descriptions["{attr}"] must be a list of strings')
    return errors


def load_attribute_file(path: str | Path) -> AttributeFile:
    """Read and structurally validate an attribute file.

    Raises :class:`AttributeDataError` naming the file and listing every structural
    problem. Content problems (missing classes or attributes, long sentences) are left to
    :func:`match_classes` and :func:`validate_attribute_file`, which can list them all.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise AttributeDataError(f"attribute file not found: {path}") from None
    except UnicodeDecodeError as e:
        raise AttributeDataError(
            f"{path} is not UTF-8 text (byte {e.start}: {e.reason}); attribute files are UTF-8 JSON. "
            "Save it again as UTF-8 (e.g. iconv -f latin1 -t utf-8), or regenerate it with "
            "python -m tools.generate_attributes."
        ) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise AttributeDataError(f"{path} is not valid JSON: {e}") from None
    errors = _schema_errors(data)
    if errors:
        raise AttributeDataError(
            f"{path} does not follow the attribute file format (attribute_data/README.md):\n  - "
            + "\n  - ".join(errors)
        )
    return AttributeFile(
        dataset=data["dataset"],
        domain=data["domain"],
        attributes=[Attribute(a["name"], a["definition"]) for a in data["attributes"]],
        classes=[
            ClassEntry(name=c["name"], descriptions={k: list(v) for k, v in c["descriptions"].items()},
                       id=c.get("id"))
            for c in data["classes"]
        ],
        generator=dict(data.get("generator", {})),
        path=str(path),
    )


# --------------------------------------------------------------------------- matching

def normalize_classname(name: str) -> str:
    """Lower case, ``_`` -> space, runs of whitespace collapsed (the matching key)."""
    return " ".join(name.replace("_", " ").lower().split())


def _assign(attr_file: AttributeFile, classnames: Sequence[str],
            wnids: Optional[Sequence[str]]) -> tuple[list[Optional[ClassEntry]], list[str]]:
    """Entry for each dataset class (None when unmatched) and a line per unmatched class."""
    if wnids is not None:
        if len(wnids) != len(classnames):
            raise AttributeDataError(
                f"got {len(classnames)} class names but {len(wnids)} wnids; pass one wnid per class")
        by_id = {c.id: c for c in attr_file.classes if c.id is not None}
        entries = [by_id.get(w) for w in wnids]
        missing = [f'{i}: "{n}" (wnid {w})' for i, (n, w, e) in enumerate(zip(classnames, wnids, entries))
                   if e is None]
        return entries, missing

    # Names can repeat (ImageNet: "missile", "sunglasses"): the k-th dataset class with a
    # name takes the k-th file entry with that name, so label order decides.
    by_name: dict[str, list[ClassEntry]] = defaultdict(list)
    for c in attr_file.classes:
        by_name[normalize_classname(c.name)].append(c)
    used: dict[str, int] = defaultdict(int)
    entries, missing = [], []
    for i, name in enumerate(classnames):
        key = normalize_classname(name)
        k = used[key]
        used[key] += 1
        candidates = by_name.get(key, [])
        if k < len(candidates):
            entries.append(candidates[k])
        else:
            entries.append(None)
            extra = f" (occurrence {k + 1}; the file has {len(candidates)})" if candidates else ""
            missing.append(f'{i}: "{name}"{extra}')
    return entries, missing


def assign_classes(attr_file: AttributeFile, classnames: Sequence[str],
                   wnids: Optional[Sequence[str]] = None) -> list[Optional[ClassEntry]]:
    """Like :func:`match_classes` but lenient: None for unmatched classes, content unchecked."""
    return _assign(attr_file, classnames, wnids)[0]


def _content_problems(entry: ClassEntry, attribute_names: Sequence[str], label: str) -> list[str]:
    """Missing attributes and empty sentences of one class."""
    problems = []
    for attr in attribute_names:
        sentences = entry.descriptions.get(attr)
        if sentences is None:
            problems.append(f'{label}: attribute "{attr}" is missing')
        elif not sentences:
            problems.append(f'{label}: attribute "{attr}" has no sentence')
        elif any(not s.strip() for s in sentences):
            problems.append(f'{label}: attribute "{attr}" has an empty sentence')
    return problems


def match_classes(attr_file: AttributeFile, classnames: Sequence[str],
                  wnids: Optional[Sequence[str]] = None, *, config_key: str = _CONFIG_KEY) -> list[ClassEntry]:
    """The file's entry for each dataset class, in the dataset's label order.

    Names are compared after :func:`normalize_classname`; where a name repeats, the k-th
    occurrence in ``classnames`` takes the k-th entry of that name. With ``wnids`` (one per
    class, e.g. ImageNet-A/-R) entries are found by their ``"id"`` instead.

    Raises one :class:`AttributeDataError` listing every unmatched class, missing attribute
    and empty description; it names ``config_key``, the setting that points to another file.
    """
    entries, missing = _assign(attr_file, classnames, wnids)
    problems = [f"no entry for class {m}" for m in missing]
    for i, (name, entry) in enumerate(zip(classnames, entries)):
        if entry is not None:
            problems += _content_problems(entry, attr_file.attribute_names, f'class {i} "{name}"')
    if problems:
        source = attr_file.path or f"the attribute file of {attr_file.dataset}"
        raise AttributeDataError(
            f"{source} does not cover this dataset's {len(classnames)} classes "
            f"({len(problems)} problem(s)):\n  - " + "\n  - ".join(problems)
            + f"\nAdd the missing entries (python -m tools.generate_attributes --extend FILE ...) "
            f"or point {config_key} to a file that has them.")
    return entries  # type: ignore[return-value]  # no None left once problems is empty


def find_attribute_file(dataset_name: str, explicit_path: str = "",
                        root: str | Path | None = None, *, config_key: str = _CONFIG_KEY) -> Path:
    """The attribute file for a dataset: ``explicit_path`` if given, else
    ``<root>/<config name>.json`` for the dataset's ``DATASET.NAME`` (root: ``attribute_data/``).
    Errors name ``config_key``, the setting that holds ``explicit_path``.
    """
    if explicit_path:
        path = Path(explicit_path).expanduser()
        # Relative paths are tried from the working directory, then from the repository.
        for candidate in (path, REPO_ROOT / path):
            if candidate.is_file():
                return candidate
        raise AttributeDataError(
            f"{config_key} = {explicit_path!r}: no such file; set it to an existing attribute "
            f"JSON file, or leave it empty to use attribute_data/<dataset>.json")
    root = Path(root) if root is not None else ATTRIBUTE_DATA_ROOT
    lookup = {k.lower(): v for k, v in DATASET_FILES.items()}
    lookup.update({v: v for v in DATASET_FILES.values()})
    stem = lookup.get(dataset_name.lower())
    if stem is None:
        raise AttributeDataError(
            f"no attribute file is known for DATASET.NAME {dataset_name!r} (known: "
            f"{', '.join(DATASET_FILES)}); set {config_key} to the dataset's attribute file")
    path = root / f"{stem}.json"
    if not path.is_file():
        raise AttributeDataError(
            f"attribute file {path} for dataset {dataset_name} does not exist; generate it "
            f"(python -m tools.generate_attributes --dataset {stem} --model M) or set "
            f"{config_key} to an existing file")
    return path


# --------------------------------------------------------------------------- validation

@lru_cache(maxsize=1)
def _tokenizer():
    # Imported here: ``clip`` imports torch, which this module must not need at import time.
    from ..common.openai_clip import clip
    return clip.simple_tokenizer.SimpleTokenizer()


def count_clip_tokens(text: str) -> int:
    """BPE tokens of ``text`` in CLIP's tokenizer, without the start/end tokens."""
    return len(_tokenizer().encode(text))


def _words(text: str) -> str:
    """Lower-case alphanumeric words joined by single spaces (punctuation -> space)."""
    return " ".join(re.sub(r"[^0-9a-z]+", " ", text.lower()).split())


def _name_forms(classname: str) -> set[str]:
    """Ways a sentence may name a class (as :func:`_words` forms).

    The whole name always. For names with symbols or digits also the distinctive part:
    each side of " / " ("baluster / handrail"), the name without a bracketed gloss and the
    gloss ("kite (bird of prey)"), the name without a leading model year ("2012 Acura RL
    Sedan"), and any model code with a digit ("Boeing 737-800" -> "737 800").
    """
    forms = {_words(classname)}
    if re.search(r"[^A-Za-z\s]", classname):
        for part in re.split(r"\s/\s", classname):
            forms.add(_words(part))
            outside = re.sub(r"\([^)]*\)", " ", part)
            forms.add(_words(outside))
            forms.update(_words(g) for g in re.findall(r"\(([^)]*)\)", part))
            forms.add(_words(re.sub(r"^\s*(19|20)\d\d\s+", "", outside)))
            forms.update(_words(t) for t in outside.split()
                         if re.search(r"\d", t) and not re.fullmatch(r"(19|20)\d\d", t) and len(t) >= 2)
    forms.discard("")
    return forms


def names_class(sentence: str, classname: str) -> bool:
    """Whether ``sentence`` names ``classname`` (case-insensitive, whole words, plural allowed)."""
    text = _words(sentence)
    return any(re.search(rf"(^| ){re.escape(f)}(s|es)?( |$)", text) for f in _name_forms(classname))


def validate_class_descriptions(descriptions: dict[str, list[str]], attribute_names: Sequence[str],
                                classname: str, max_words: int = 30, max_tokens: int = 60,
                                label: str = "") -> list[str]:
    """Problems of one class's descriptions (missing/extra attributes, empty, too long, unnamed)."""
    label = label or f'class "{classname}"'
    problems = _content_problems(ClassEntry(classname, descriptions), attribute_names, label)
    for attr in sorted(set(descriptions) - set(attribute_names)):
        problems.append(f'{label}: "{attr}" is not one of the attributes {list(attribute_names)}')
    for attr in attribute_names:
        for s in descriptions.get(attr) or []:
            if not s.strip():
                continue
            n_words = len(s.split())
            if n_words > max_words:
                problems.append(f'{label}, "{attr}": {n_words} words (max {max_words}): {s!r}')
            n_tokens = count_clip_tokens(s)
            if n_tokens > max_tokens:
                problems.append(f'{label}, "{attr}": {n_tokens} CLIP tokens (max {max_tokens}): {s!r}')
            if not names_class(s, classname):
                problems.append(f'{label}, "{attr}": sentence does not name the class: {s!r}')
    return problems


def validate_attribute_file(attr_file: AttributeFile, classnames: Optional[Sequence[str]] = None,
                            max_words: int = 30, max_tokens: int = 60, *,
                            wnids: Optional[Sequence[str]] = None,
                            min_attributes: int = MIN_ATTRIBUTES,
                            max_attributes: int = MAX_ATTRIBUTES) -> list[str]:
    """Every problem that keeps ``attr_file`` from the quality bar (empty list: it passes).

    With ``classnames`` (label order; ``wnids`` optionally, one per class) the file must
    cover exactly those classes, in that order. ``max_tokens`` counts CLIP BPE tokens
    without start/end, so the default 60 leaves room in CLIP's 77-token context (for
    example for learnable context tokens prepended to a description).
    """
    problems = []
    k = len(attr_file.attributes)
    if not min_attributes <= k <= max_attributes:
        problems.append(f"{k} attributes; expected {min_attributes} to {max_attributes}")

    recorded = attr_file.generator.get("prompt_sha256")
    if isinstance(recorded, dict) and recorded != prompt_hashes():
        problems.append("generator.prompt_sha256 differs from the shipped prompts "
                        "(attribute_data/prompts/): the data was made with other prompts; regenerate it")

    if classnames is None:
        checked = [(c.name, c) for c in attr_file.classes]
    else:
        entries, missing = _assign(attr_file, classnames, wnids)
        problems += [f"missing class {m}" for m in missing]
        used = {id(e) for e in entries if e is not None}
        problems += [f'entry "{c.name}" matches no class of the list' for c in attr_file.classes
                     if id(c) not in used]
        matched = [e for e in entries if e is not None]
        first = next((i for i, (a, b) in enumerate(zip(matched, attr_file.classes)) if a is not b), None)
        if not missing and len(matched) == len(attr_file.classes) and first is not None:
            problems.append(f'classes are not in label order: position {first} holds '
                            f'"{attr_file.classes[first].name}", expected "{matched[first].name}"')
        checked = [(n, e) for n, e in zip(classnames, entries) if e is not None]

    sentence_places: dict[str, list[str]] = defaultdict(list)
    for name, entry in checked:
        problems += validate_class_descriptions(entry.descriptions, attr_file.attribute_names, name,
                                                max_words, max_tokens)
        for attr, sentences in entry.descriptions.items():
            for s in sentences:
                if s.strip():
                    sentence_places[_words(s)].append(f'"{name}"/{attr}')
    for places in sentence_places.values():
        if len(places) > 1:
            problems.append(f"the same sentence appears {len(places)} times: {', '.join(places)}")
    return problems


# --------------------------------------------------------------------------- prompts

def prompt_hashes(prompts_dir: str | Path = PROMPTS_DIR) -> dict[str, str]:
    """SHA-256 (hex) of each shipped step prompt, as recorded in ``generator.prompt_sha256``."""
    prompts_dir = Path(prompts_dir)
    return {name: hashlib.sha256((prompts_dir / name).read_bytes()).hexdigest() for name in PROMPT_FILES}
