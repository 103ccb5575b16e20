"""Dataset readers, registered in ``dassl.data.datasets.DATASET_REGISTRY`` on import.

Every module of this package is imported (pkgutil), so a new reader file, e.g.
``synthetic.py``, registers itself without editing this file.
"""
import importlib
import pkgutil

for _module in sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_")):
    importlib.import_module(f"{__name__}.{_module}")
