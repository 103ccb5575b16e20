"""A yacs ``CfgNode`` whose merges fail with messages that name the key and the fix.

Semantics are exactly yacs 0.1.8 (keys must exist, values are ``literal_eval``-decoded,
types must match apart from list<->tuple and None), so YAMLs behave as upstream. Only
the errors differ: upstream's ``Type mismatch (<class 'float'> vs. <class 'int'>)``
becomes ``TRAINER.COOP.W expects a float (default: 1.0), got the int 8: write 8.0``.
"""
from __future__ import annotations

import difflib
from typing import Any, Iterator, List, Tuple

import yaml
from yacs.config import CfgNode as _YacsCfgNode

__all__ = ["CfgNode", "ConfigError"]


class ConfigError(ValueError):
    """A config file or a command-line override does not fit the defaults."""


_TYPE_NAMES = {bool: "a bool", int: "an int", float: "a float", str: "a str", list: "a list", tuple: "a tuple"}


def _type_name(value: Any) -> str:
    if isinstance(value, _YacsCfgNode):
        return "a config section"
    return _TYPE_NAMES.get(type(value), f"a {type(value).__name__}")


def _fix_hint(key: str, new: Any, old: Any) -> str:
    """How to write ``new`` so that it has the type of ``old``."""
    if isinstance(old, float) and type(new) is int:
        return f": write {float(new)!r}"
    if type(old) is int and isinstance(new, float) and new.is_integer():
        return f": write {int(new)}"
    if isinstance(old, bool):
        return ": write True or False"
    if isinstance(old, str):
        leaf = key.rsplit(".", 1)[-1]
        return f""": write a string, e.g. {leaf}: "{new}" in YAML or {key} '"{new}"' on the command line"""
    if isinstance(old, (list, tuple)):
        return f": write a sequence, e.g. {list(old)!r}"
    return ""


def _yaml_problem(err: "yaml.YAMLError") -> str:
    """The one line of a YAML error a user needs: what is wrong, and where (1-based)."""
    mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
    problem = getattr(err, "problem", None) or str(err).splitlines()[0]
    if mark is None:
        return problem
    return f"{problem} (line {mark.line + 1}, column {mark.column + 1})"


def _coerce_ok(new: Any, old: Any) -> bool:
    """yacs' rule: same type, None on either side, or list<->tuple."""
    if type(new) is type(old):
        return True
    if new is None or old is None:
        return True
    return isinstance(new, (list, tuple)) and isinstance(old, (list, tuple))


class CfgNode(_YacsCfgNode):
    """yacs ``CfgNode`` with validated, clearly reported merges."""

    def _all_keys(self, prefix: str = "") -> Iterator[str]:
        for k, v in self.items():
            full = f"{prefix}{k}"
            yield full
            if isinstance(v, _YacsCfgNode):
                yield from CfgNode._all_keys(v, full + ".")

    def _unknown_key(self, full_key: str) -> ConfigError:
        close = difflib.get_close_matches(full_key, list(self._all_keys()), n=1, cutoff=0.6)
        hint = f' Did you mean "{close[0]}"?' if close else ""
        return ConfigError(
            f'Unknown config key "{full_key}".{hint} Keys must exist in the defaults '
            "(dassl/config/defaults.py, trainer nodes in trainers/config.py)."
        )

    def _check_pair(self, full_key: str, new: Any, old: Any) -> None:
        if isinstance(old, _YacsCfgNode) != isinstance(new, _YacsCfgNode):
            kind = "a section with sub-keys" if isinstance(old, _YacsCfgNode) else f"{_type_name(old)} value"
            raise ConfigError(f'Config key "{full_key}" is {kind}, got {_type_name(new)} {new!r}')
        if not _coerce_ok(new, old):
            raise ConfigError(
                f'Config key "{full_key}" expects {_type_name(old)} (default: {old!r}), '
                f"got {_type_name(new)} {new!r}{_fix_hint(full_key, new, old)}"
            )

    def _validate_other(self, other: _YacsCfgNode, node: _YacsCfgNode, prefix: str) -> None:
        for k, v in other.items():
            full_key = f"{prefix}{k}"
            v = self._decode_cfg_value(v)
            if k not in node:
                if node.is_new_allowed():
                    continue
                raise self._unknown_key(full_key)
            self._check_pair(full_key, v, node[k])
            if isinstance(v, _YacsCfgNode):
                self._validate_other(v, node[k], full_key + ".")

    def merge_from_other_cfg(self, cfg_other: _YacsCfgNode) -> None:
        self._validate_other(cfg_other, self, "")
        super().merge_from_other_cfg(cfg_other)

    def merge_from_file(self, cfg_filename: str) -> None:
        try:
            with open(cfg_filename, "r", encoding="utf-8") as f:
                cfg = self.load_cfg(f)
        except FileNotFoundError:
            raise FileNotFoundError(f'Config file not found: "{cfg_filename}"') from None
        except yaml.YAMLError as e:
            raise ConfigError(f'"{cfg_filename}" is not valid YAML: {_yaml_problem(e)}. Fix that line '
                              '(sections and keys as in configs/: "KEY: value", indented with spaces, '
                              "no tabs).") from None
        except UnicodeDecodeError as e:
            raise ConfigError(f'"{cfg_filename}" is not UTF-8 text (byte {e.start}: {e.reason}); '
                              "save it again as UTF-8.") from None
        try:
            self.merge_from_other_cfg(cfg)
        except ConfigError as e:
            raise ConfigError(f'In "{cfg_filename}": {e}') from None

    def merge_from_list(self, cfg_list: List[Any]) -> None:
        if len(cfg_list) % 2 != 0:
            raise ConfigError(
                f"Config overrides must be KEY VALUE pairs, got an odd number of items: {cfg_list}"
            )
        pairs: List[Tuple[str, Any]] = list(zip(cfg_list[0::2], cfg_list[1::2]))
        for full_key, raw in pairs:
            if str(full_key).startswith("-"):
                raise ConfigError(
                    f'"{full_key}" looks like a command-line flag, but it stands among the KEY VALUE '
                    "config overrides, which take only config keys: put the flags before them."
                )
            node: Any = self
            for sub in full_key.split("."):
                if not isinstance(node, _YacsCfgNode) or sub not in node:
                    raise self._unknown_key(full_key)
                node = node[sub]
            self._check_pair(full_key, self._decode_cfg_value(raw), node)
        super().merge_from_list(cfg_list)
