"""Trainers: one module per method, each registered in ``TRAINER_REGISTRY``.

``register_all()`` imports every module of this package (``trainers/<method>.py``, and the
reusable parts of ``trainers/parts/``), so adding a file is enough to make ``--trainer <Method>``
work. ``trainers.config.extend_cfg`` calls it, as ``train.py`` does. Importing the package
itself registers nothing: a tool that needs one module (e.g. the attribute generator,
``trainers.parts.attributes``) does not load every trainer. The floors (DEVELOPING.md, "Floor
plan"): ``common`` (CLIP pieces) < ``parts`` (method parts) < one file per method; a method
never imports another.
"""
import importlib
import pkgutil


def register_all() -> None:
    """Import every module of the package, registering its trainers and config nodes."""
    for info in pkgutil.walk_packages(__path__, prefix=f"{__name__}."):
        if not info.name.rsplit(".", 1)[-1].startswith("_"):
            importlib.import_module(info.name)


__all__ = ["register_all"]
