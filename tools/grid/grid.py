"""What to run: protocols x methods x datasets x seeds (x shot counts for few-shot).

From command-line flags, a YAML file (``--grid FILE``), or both (flags win)::

    protocols: [base2new, fewshot]      # base2new, cross_dataset (xd), domain_generalization (dg), fewshot
    methods: [CoOp, SemPT]              # trainer names or script folders; default: all
    datasets: [caltech101, dtd]         # one list for every protocol, or per protocol:
    #   datasets: {base2new: [dtd], cross_dataset: [caltech101]}
    seeds: [1, 2, 3]
    shots: [1, 2, 4, 8, 16]             # few-shot shot counts
    opts: [OPTIM.MAX_EPOCH, 2]          # KEY VALUE config overrides for every run
    method_opts: {SemPT: [TRAINER.SEMPT.KG_WEIGHT, 8.0]}   # for one method's runs only
    backbones: [ViT-B/16, "open_clip:ViT-B-16-SigLIP2@webli"]  # NAME[@PRETRAINED]; default: each config's
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import yaml

from .methods import REPO

PROTOCOLS = ("base2new", "cross_dataset", "domain_generalization", "fewshot")
ALIASES = {"b2n": "base2new", "xd": "cross_dataset", "cross-dataset": "cross_dataset",
           "dg": "domain_generalization", "domain-generalization": "domain_generalization",
           "few-shot": "fewshot", "few_shot": "fewshot"}
# The datasets of the published benchmark, in paper order.
ELEVEN = ["imagenet", "caltech101", "oxford_pets", "stanford_cars", "oxford_flowers", "food101",
          "fgvc_aircraft", "sun397", "dtd", "eurosat", "ucf101"]
DG_TARGETS = ["imagenetv2", "imagenet_sketch", "imagenet_a", "imagenet_r"]
DEFAULT_DATASETS: Dict[str, List[str]] = {
    "base2new": ELEVEN,
    "cross_dataset": ELEVEN[1:],  # targets; the source (ImageNet) is trained by xd_train.sh
    "domain_generalization": DG_TARGETS,
    "fewshot": ELEVEN,
}
DEFAULT_SEEDS = [1, 2, 3]
DEFAULT_SHOTS = [1, 2, 4, 8, 16]
GRID_KEYS = ("protocols", "methods", "datasets", "seeds", "shots", "opts", "method_opts", "backbones")


def normalise_protocol(name: str, where: str = "--protocol") -> str:
    key = name.strip().lower()
    key = ALIASES.get(key, key)
    if key not in PROTOCOLS:
        raise ValueError(f"unknown protocol '{name}' in {where}; choose from {', '.join(PROTOCOLS)} "
                         f"(short: {', '.join(sorted(ALIASES))})")
    return key


def available_datasets() -> List[str]:
    return sorted(p.stem for p in (REPO / "configs" / "datasets").glob("*.yaml"))


@dataclass
class Grid:
    protocols: List[str]
    methods: List[str] = field(default_factory=list)  # empty: all methods
    datasets: Dict[str, List[str]] = field(default_factory=dict)  # per protocol
    seeds: List[int] = field(default_factory=lambda: list(DEFAULT_SEEDS))
    shots: List[int] = field(default_factory=lambda: list(DEFAULT_SHOTS))
    opts: List[str] = field(default_factory=list)
    method_opts: Dict[str, List[str]] = field(default_factory=dict)
    # MODEL.BACKBONE.NAME[@MODEL.BACKBONE.PRETRAINED] per run; empty: the backbone of each config.
    backbones: List[str] = field(default_factory=list)

    def datasets_for(self, protocol: str) -> List[str]:
        return self.datasets.get(protocol) or DEFAULT_DATASETS[protocol]

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)


def backbone_opts(spec: str) -> List[str]:
    """The KEY VALUE overrides of a backbone axis entry ``NAME[@PRETRAINED]`` ("" for none):
    the scripts name the run folders after them (``backbone_tag`` in scripts/lib.sh)."""
    if not spec:
        return []
    name, _, pretrained = spec.partition("@")
    return ["MODEL.BACKBONE.NAME", name] + (["MODEL.BACKBONE.PRETRAINED", pretrained] if pretrained else [])


def _as_str_list(value: Any, key: str, where: str) -> List[str]:
    if isinstance(value, (str, int, float)):
        value = [value]
    if not isinstance(value, list):
        raise ValueError(f"{where}: '{key}' must be a list, got {type(value).__name__}")
    return [str(v) for v in value]


def _as_int_list(value: Any, key: str, where: str) -> List[int]:
    items = _as_str_list(value, key, where)
    try:
        return [int(v) for v in items]
    except ValueError:
        raise ValueError(f"{where}: '{key}' must be whole numbers, got {items}") from None


def _check_opts(opts: List[str], where: str) -> List[str]:
    if len(opts) % 2:
        raise ValueError(f"{where}: config overrides come in KEY VALUE pairs, got an odd number: {opts}")
    return opts


def load_grid_file(path: str) -> Dict[str, Any]:
    """The YAML grid file as a dict of known keys (a clear error for anything else)."""
    file = Path(path)
    if not file.is_file():
        raise ValueError(f"--grid {path}: no such file")
    try:
        data = yaml.safe_load(file.read_text()) or {}
    except yaml.YAMLError as err:
        raise ValueError(f"--grid {path}: not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise ValueError(f"--grid {path}: expected a mapping of {', '.join(GRID_KEYS)}")
    unknown = sorted(set(data) - set(GRID_KEYS))
    if unknown:
        raise ValueError(f"--grid {path}: unknown key(s) {unknown}; allowed: {', '.join(GRID_KEYS)}")
    return data


def build_grid(
    file_values: Optional[Dict[str, Any]] = None,
    where: str = "the grid",
    protocols: Optional[Sequence[str]] = None,
    methods: Optional[Sequence[str]] = None,
    datasets: Optional[Sequence[str]] = None,
    seeds: Optional[Sequence[int]] = None,
    shots: Optional[Sequence[int]] = None,
    opts: Optional[Sequence[str]] = None,
    backbones: Optional[Sequence[str]] = None,
) -> Grid:
    """A validated grid from a grid file's values, overridden by the flags that were given."""
    values = dict(file_values or {})
    if protocols:
        values["protocols"] = list(protocols)
    if methods:
        values["methods"] = list(methods)
    if datasets:
        values["datasets"] = list(datasets)
    if seeds:
        values["seeds"] = list(seeds)
    if shots:
        values["shots"] = list(shots)
    if opts:
        values["opts"] = list(opts)
    if backbones:
        values["backbones"] = list(backbones)
    if not values.get("protocols"):
        raise ValueError(f"{where}: no protocol; pass --protocol {' '.join(PROTOCOLS)} (one or more) "
                         "or 'protocols:' in the grid file")
    grid = Grid(protocols=[normalise_protocol(p, where) for p in _as_str_list(values["protocols"], "protocols", where)])
    grid.methods = _as_str_list(values.get("methods", []), "methods", where)
    known = set(available_datasets())
    raw = values.get("datasets")
    if isinstance(raw, dict):
        per = {normalise_protocol(k, where): _as_str_list(v, f"datasets.{k}", where) for k, v in raw.items()}
    elif raw:
        names = _as_str_list(raw, "datasets", where)
        per = {p: names for p in grid.protocols}
    else:
        per = {}
    for protocol, names in per.items():
        bad = [n for n in names if n not in known]
        if bad:
            raise ValueError(f"{where}: unknown dataset(s) {bad} for {protocol}; "
                             f"available (configs/datasets/): {' '.join(sorted(known))}")
    grid.datasets = per
    if "seeds" in values:
        grid.seeds = _as_int_list(values["seeds"], "seeds", where)
    if "shots" in values:
        grid.shots = _as_int_list(values["shots"], "shots", where)
    grid.opts = _check_opts(_as_str_list(values.get("opts", []), "opts", where), f"{where} (opts)")
    method_opts = values.get("method_opts") or {}
    if not isinstance(method_opts, dict):
        raise ValueError(f"{where}: 'method_opts' must map a method to its KEY VALUE list")
    grid.method_opts = {str(k): _check_opts(_as_str_list(v, f"method_opts.{k}", where), f"{where} (method_opts.{k})")
                        for k, v in method_opts.items()}
    grid.backbones = _as_str_list(values.get("backbones", []), "backbones", where)
    if any(not b.partition("@")[0] for b in grid.backbones):
        raise ValueError(f"{where}: a backbone is NAME or NAME@PRETRAINED, got {grid.backbones}")
    if not grid.seeds:
        raise ValueError(f"{where}: no seeds")
    return grid
