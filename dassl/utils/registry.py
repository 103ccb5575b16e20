"""A name -> object registry, as in Dassl/fvcore: ``@REG.register()`` keyed by ``__name__``."""
from __future__ import annotations

import difflib
from typing import Any, Callable, Dict, List


class Registry:
    """Maps names to classes or functions.

    >>> BACKBONE = Registry("BACKBONE")
    >>> @BACKBONE.register()
    ... class MyNet: ...
    """

    def __init__(self, name: str) -> None:
        self._name = name
        self._obj_map: Dict[str, Any] = {}

    def _do_register(self, name: str, obj: Any, force: bool = False) -> None:
        if name in self._obj_map and not force:
            raise KeyError(
                f'An object named "{name}" was already registered in "{self._name}" registry'
            )
        self._obj_map[name] = obj

    def register(self, obj: Any = None, force: bool = False) -> Any:
        """Use as ``@register()`` / ``@register`` decorator or ``register(obj)``."""
        if obj is None:

            def wrapper(fn_or_class: Callable) -> Callable:
                self._do_register(fn_or_class.__name__, fn_or_class, force=force)
                return fn_or_class

            return wrapper
        self._do_register(obj.__name__, obj, force=force)
        return obj

    def get(self, name: str) -> Any:
        if name not in self._obj_map:
            close = difflib.get_close_matches(name, self._obj_map.keys(), n=1)
            hint = f' Do you mean "{close[0]}"?' if close else ""
            raise KeyError(
                f'Object name "{name}" does not exist in "{self._name}" registry. '
                f"Registered: {sorted(self._obj_map)}.{hint}"
            )
        return self._obj_map[name]

    def registered_names(self) -> List[str]:
        return list(self._obj_map.keys())

    def __contains__(self, name: str) -> bool:
        return name in self._obj_map

    def __repr__(self) -> str:  # pragma: no cover - cosmetic
        return f"Registry(name={self._name!r}, items={sorted(self._obj_map)})"


def check_availability(requested: str, available: List[str]) -> None:
    """Raise ``ValueError`` with a "do you mean" suggestion (upstream Dassl behaviour)."""
    if requested not in available:
        close = difflib.get_close_matches(requested, available, n=1)
        hint = f' Do you mean "{close[0]}"?' if close else ""
        raise ValueError(
            f'The requested one "{requested}" is not available; choose from {sorted(available)}.{hint}'
        )


__all__ = ["Registry", "check_availability"]
