"""What a run folder's numbers depend on: its record, its fingerprint, and when it is finished.

``train.py`` writes two files into every run folder before it trains or evaluates:

- ``config.yaml``: the resolved config, in full;
- ``run_record.json``: the fingerprint (a hash over the keys that change the numbers,
  :data:`KEY_ROLES`), those keys' values, the fingerprint of the model an evaluation
  loaded (``--model-dir``), and for every attempt (a resume is one) the command line,
  the host and the code version (``git describe``, when known). The attempts are kept
  outside the fingerprint: they say how the numbers came about, not what they depend on.

A run folder belongs to one fingerprint. Resuming it, skipping it as finished and
reporting it all compare the folder's record with the command's config: a difference is
*stale* (:func:`run_state`), never resumed, skipped or reported. Folders written before
records existed (and upstream's) have none; they are judged by their log alone, with one
warning line.

"Finished" is defined here once (:func:`result_logged`, :func:`run_state`), for
``train.py``, ``scripts/lib.sh`` (``finished``, through ``train.py``'s ``run_state_cli``),
the benchmark runner (``tools/grid/state.py``) and the result parsers
(``tools/results.py``).

No torch import here: the runner and the scripts ask for a run's state without loading
the engine (as ``dassl/run_lock.py``).
"""
from __future__ import annotations

import datetime
import fnmatch
import functools
import glob
import hashlib
import json
import os
import os.path as osp
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

__all__ = [
    "RECORD_FILE", "CONFIG_FILE", "RESULT_MARK", "WHERE", "SHOWN", "RESULT", "MODEL", "KEY_ROLES",
    "key_role", "flat_config", "result_keys", "fingerprint", "model_keys", "Difference", "differences",
    "format_differences", "read_record", "write_record", "result_logged", "RunState", "run_state",
    "code_version", "LEGACY_WARNING", "evaluated_model_changed", "aside_path",
]

RECORD_FILE = "run_record.json"
CONFIG_FILE = "config.yaml"
#: The first line of the evaluator's result block (``dassl/evaluation/evaluator.py``).
RESULT_MARK = "=> result"
_RECORD_VERSION = 1

# The roles of config keys. WHERE and SHOWN keys are outside the fingerprint.
WHERE = "where"    # where things are read from or stored
SHOWN = "shown"    # how much is printed or kept, how fast: never the numbers
RESULT = "result"  # changes the numbers
MODEL = "model"    # changes the numbers and the trained model itself: a model and its evaluation must agree

#: THE list of which config keys change a run's numbers: ``(pattern, role, why)``, the
#: first matching pattern wins (``*`` matches any part of a dotted name). A key matching
#: none is an error (``tests/engine/test_run_record.py`` checks every key of the default
#: config), so a new key must be classified here. A new key under a node listed as
#: RESULT (e.g. ``TRAINER.*``) is counted in the fingerprint unless it is listed before.
KEY_ROLES: Tuple[Tuple[str, str, str], ...] = (
    ("OUTPUT_DIR", WHERE, "the run folder itself"),
    ("RESUME", WHERE, "the folder a training resumes from (its own record is compared)"),
    ("DATASET.ROOT", WHERE, "where the datasets are"),
    ("DATASET.CACHE_DIR", WHERE, "where split and few-shot caches go"),
    ("FEATURE_CACHE.*", WHERE, "the image-feature cache: exact by test, whether on or off"),
    ("TRAINER.*.DESC_CACHE_DIR", WHERE, "where the description embeddings are cached"),
    ("VERBOSE", SHOWN, "printing"),
    ("TRAIN.PRINT_FREQ", SHOWN, "printing"),
    ("TEST.COMPUTE_CMAT", SHOWN, "prints the confusion matrix; the accuracy is the same"),
    ("TEST.PER_CLASS_RESULT", SHOWN, "prints per-class accuracies; the accuracy is the same"),
    ("TRAIN.CHECKPOINT_FREQ", SHOWN, "which epoch checkpoints are kept after training"),
    ("DATALOADER.NUM_WORKERS", SHOWN, "speed: each item's augmentation is seeded by (seed, epoch, index)"),
    ("TRAINER.NAME", MODEL, "the method"),
    ("MODEL.BACKBONE.NAME", MODEL, "the backbone"),
    ("MODEL.BACKBONE.PRETRAINED", MODEL, "the backbone's weights (open_clip)"),
    ("MODEL.INIT_WEIGHTS", MODEL, "initial weights"),
    ("MODEL.HEAD.*", MODEL, "the head's shape"),
    ("TRAINER.*.N_CTX*", MODEL, "context length"),
    ("TRAINER.*.CTX_INIT", MODEL, "context initialisation (and length, when given as words)"),
    ("TRAINER.*.CSC", MODEL, "class-specific context"),
    ("TRAINER.*.CLASS_TOKEN_POSITION", MODEL, "prompt layout"),
    ("TRAINER.*.PROMPT_DEPTH*", MODEL, "prompt depth"),
    ("TRAINER.TCP.INSERT_LAYER", MODEL, "where TCP's class tokens enter"),
    ("TRAINER.SEMPT.LABEL_BRANCH", MODEL, "SemPT's label branch (its prompt learner)"),
    ("TRAINER.*.ATTRIBUTE_FILE", RESULT, "a path, but it names the attributes the method reads"),
    ("SEED", RESULT, ""),
    ("USE_CUDA", RESULT, "the device changes floating-point results"),
    ("VERSION", RESULT, ""),
    ("INPUT.*", RESULT, ""),
    ("DATASET.*", RESULT, ""),
    ("DATALOADER.*", RESULT, ""),
    ("MODEL.*", RESULT, ""),
    ("OPTIM.*", RESULT, ""),
    ("TRAIN.*", RESULT, ""),
    ("TEST.*", RESULT, ""),
    ("LOSS.*", RESULT, ""),
    ("TRAINER.*", RESULT, "every method's own settings"),
)

LEGACY_WARNING = ("warning: {dir} has no {record} (written before run records existed, or by upstream): "
                  "its config cannot be compared with this command's")


def key_role(key: str) -> str:
    """The role of a dotted config key in :data:`KEY_ROLES`; ``KeyError`` if none matches."""
    for pattern, role, _ in KEY_ROLES:
        if fnmatch.fnmatchcase(key, pattern):
            return role
    raise KeyError(f"config key {key} is not classified in dassl/run_record.py KEY_ROLES: say whether it "
                   "changes the numbers (RESULT, MODEL) or not (WHERE, SHOWN)")


def _plain(value: Any) -> Any:
    """A JSON value: tuples become lists (a YAML list and a command-line tuple are the same setting)."""
    return json.loads(json.dumps(value, default=str))


def flat_config(cfg: Mapping) -> Dict[str, Any]:
    """``{"OPTIM.LR": 0.002, ...}``: every leaf of a (yacs) config, as plain JSON values."""
    flat: Dict[str, Any] = {}

    def walk(node: Mapping, prefix: str) -> None:
        for key, value in node.items():
            if isinstance(value, Mapping):
                walk(value, prefix + key + ".")
            else:
                flat[prefix + key] = _plain(value)

    walk(cfg, "")
    return flat


def result_keys(cfg: Mapping) -> Dict[str, Any]:
    """The keys of ``cfg`` that change the numbers (RESULT and MODEL), with their values."""
    return {k: v for k, v in sorted(flat_config(cfg).items()) if key_role(k) in (RESULT, MODEL)}


def fingerprint(keys: Mapping[str, Any]) -> str:
    """A short hash of :func:`result_keys` (stable across processes and Python versions)."""
    text = json.dumps(dict(sorted(keys.items())), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def model_keys(keys: Mapping[str, Any]) -> Dict[str, Any]:
    """The MODEL keys among ``keys``: a trained model and its evaluation must agree on them."""
    return {k: v for k, v in keys.items() if key_role(k) == MODEL}


@dataclass(frozen=True)
class Difference:
    key: str
    recorded: Any  # "(absent)" when the key did not exist
    now: Any

    def __str__(self) -> str:
        return f"{self.key}: {_show(self.recorded)} -> {_show(self.now)}"


_ABSENT = "(absent)"


def _show(value: Any) -> str:
    return value if value == _ABSENT else json.dumps(value)


#: :func:`result_keys` of the code's default config, once a config was built in this process
#: (:func:`register_defaults`): a key the code added after a run was recorded is no difference
#: while it holds its default, which by convention keeps the behaviour from before the key.
_DEFAULT_KEYS: Dict[str, Any] = {}


def register_defaults(default_cfg: Any) -> None:
    """Record the code's default config (``train.py`` does, before merging any file into it)."""
    _DEFAULT_KEYS.update(result_keys(default_cfg))


def differences(recorded: Mapping[str, Any], now: Mapping[str, Any]) -> List[Difference]:
    """Each key whose value differs between two :func:`result_keys` maps, sorted; a key absent
    from ``recorded`` (added to the code since) at its registered default is not one."""
    keys = sorted(set(recorded) | set(now))
    found = []
    for k in keys:
        old, new = recorded.get(k, _ABSENT), now.get(k, _ABSENT)
        if old == new or (old is _ABSENT and k in _DEFAULT_KEYS and new == _DEFAULT_KEYS[k]):
            continue
        found.append(Difference(k, old, new))
    return found


def format_differences(diffs: Sequence[Difference], indent: str = "  ") -> str:
    return "\n".join(indent + str(d) for d in diffs)


@functools.lru_cache(maxsize=None)  # once per process: the runner judges many folders
def code_version(repo: Optional[str] = None) -> str:
    """``git describe --always --dirty`` of the code's repository, or "" when unknown."""
    repo = repo or osp.dirname(osp.dirname(osp.abspath(__file__)))
    try:
        out = subprocess.run(["git", "-C", repo, "describe", "--always", "--dirty", "--tags"], capture_output=True,
                             text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""


def read_record(run_dir: str) -> Optional[Dict[str, Any]]:
    """The folder's record, or None when it has none. A record that cannot be read is an
    error naming the file (a truncated record must not turn a run into an unchecked one)."""
    path = osp.join(run_dir, RECORD_FILE)
    try:
        with open(path) as f:
            record = json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as err:
        raise ValueError(f"{path} cannot be read ({err}); move that run folder aside "
                         "(train.py --restart) or pick another --output-dir") from None
    if not isinstance(record, dict) or "fingerprint" not in record or "keys" not in record:
        raise ValueError(f"{path} is not a run record (no fingerprint); move that run folder aside "
                         "(train.py --restart) or pick another --output-dir")
    return record


def _write_atomically(path: str, text: str) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)  # readers see the old file or the new one, never half of one


def write_record(run_dir: str, cfg: Any, command: Sequence[str], model_fingerprint: str = "",
                 model_dir: str = "", command_digest: str = "") -> Dict[str, Any]:
    """Write (or, for a resumed run, extend) the folder's record and ``config.yaml``.

    The caller has compared an existing record first (:func:`run_state`): this one only
    appends the attempt to a record of the same fingerprint.
    """
    keys = result_keys(cfg)
    new_print = fingerprint(keys)
    record = read_record(run_dir)
    if record is None or record["fingerprint"] != new_print:
        record = {"version": _RECORD_VERSION, "fingerprint": new_print, "keys": keys,
                  "model_dir": osp.abspath(model_dir) if model_dir else "", "model_fingerprint": model_fingerprint,
                  "attempts": []}
    # The digest of the latest command line that made this config (train.py's command_digest):
    # a shortcut for the finished check, outside the fingerprint.
    record["command_digest"] = command_digest
    record["attempts"].append({
        "started": datetime.datetime.now().isoformat(timespec="seconds"),
        "command": list(command),
        "host": socket.gethostname(),
        "code_version": code_version(),
        "python": sys.version.split()[0],
    })
    os.makedirs(run_dir, exist_ok=True)
    _write_atomically(osp.join(run_dir, RECORD_FILE), json.dumps(record, indent=1, sort_keys=True) + "\n")
    dump = cfg.dump() if hasattr(cfg, "dump") else json.dumps(flat_config(cfg), indent=1)
    _write_atomically(osp.join(run_dir, CONFIG_FILE), dump)
    return record


def result_logged(run_dir: str) -> bool:
    """Whether a ``log.txt*`` of the folder holds the final result block: a line starting
    with ``=> result`` (rotated logs included: a resumed run's earlier logs)."""
    for path in glob.glob(osp.join(glob.escape(run_dir), "log.txt*")):
        try:
            with open(path, errors="replace") as f:
                if any(line.startswith(RESULT_MARK) for line in f):
                    return True
        except OSError:
            continue
    return False


def _training_ended(run_dir: str) -> bool:
    """A training run without a final test (``TEST.NO_TEST``) ends with this engine line."""
    path = osp.join(run_dir, "log.txt")
    try:
        with open(path, errors="replace") as f:
            return any(line.strip() in ("Finish training", "Finished training") for line in f)
    except OSError:
        return False


def evaluated_model_changed(run_dir: str) -> Optional[str]:
    """Why an evaluation's result no longer holds: the model folder it loaded (``--model-dir``)
    now holds a run of another config (retrained since). None when it still matches, or
    when either side has no record."""
    record = read_record(run_dir)
    if not record or not record.get("model_dir") or not record.get("model_fingerprint"):
        return None
    model = read_record(record["model_dir"]) if osp.isdir(record["model_dir"]) else None
    if model is None or model["fingerprint"] == record["model_fingerprint"]:
        return None
    return f"the model it evaluated ({record['model_dir']}) has since been replaced by a run of another config"


def aside_path(run_dir: str) -> str:
    """Where a replaced run folder is moved: a hidden sibling, so that no result parser
    (``seed*`` patterns, upstream's every-sub-folder mode) counts it as a run."""
    parent, name = osp.split(osp.normpath(osp.abspath(run_dir)))
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    candidate = osp.join(parent, f".{name}.replaced-{stamp}")
    n = 1
    while osp.exists(candidate):
        n += 1
        candidate = osp.join(parent, f".{name}.replaced-{stamp}-{n}")
    return candidate


@dataclass
class RunState:
    """A run folder judged against the config of the command meant to make it."""

    run_dir: str
    logged: bool  # the folder's log holds its final result
    legacy: bool  # no record: written before records existed, or by upstream
    diffs: List[Difference] = field(default_factory=list)

    @property
    def stale(self) -> bool:
        """The folder was made with another config: not this command's run."""
        return bool(self.diffs)

    @property
    def finished(self) -> bool:
        """Finished, and by this config: skip it, report it."""
        return self.logged and not self.stale

    @property
    def exists(self) -> bool:
        return osp.isdir(self.run_dir) and any(n != ".run.lock" for n in os.listdir(self.run_dir))

    def describe(self) -> str:
        if self.stale:
            return f"stale: made with another config ({'; '.join(map(str, self.diffs))})"
        return "finished" if self.finished else "not finished"


def run_state(run_dir: str, cfg: Any = None, keys: Optional[Mapping[str, Any]] = None,
              eval_only: bool = False) -> RunState:
    """The state of ``run_dir`` for the command whose config is ``cfg`` (or its
    :func:`result_keys` ``keys``). The one definition of "finished": the log holds the
    final result (``TEST.NO_TEST`` training: the end of training) and the record, if any,
    has the same fingerprint."""
    if keys is None and cfg is not None:
        keys = result_keys(cfg)
    logged = result_logged(run_dir)
    if not logged and keys is not None and keys.get("TEST.NO_TEST") and not eval_only:
        logged = _training_ended(run_dir)
    record = read_record(run_dir) if osp.isdir(run_dir) else None
    if record is None:
        return RunState(run_dir, logged, legacy=True)
    diffs = differences(record["keys"], keys) if keys is not None and record["fingerprint"] != fingerprint(keys) \
        else []
    return RunState(run_dir, logged, legacy=False, diffs=diffs)
