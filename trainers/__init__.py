"""Trainers: one module per method, each registered in ``TRAINER_REGISTRY``.

Every module of this package (except ``common`` and ``config``) is imported here,
so adding ``trainers/<method>.py`` is enough to make ``--trainer <Method>`` work.
"""
import importlib
import pkgutil

_SKIP = {"common", "config"}

for _info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    if _info.name not in _SKIP and not _info.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_info.name}")
