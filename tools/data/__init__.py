"""Data tools (``python -m tools.data``): download the datasets, check a data root, fetch split files.

Modules: ``check`` (the layout check and ``download-splits``), ``sources`` (where each file comes
from and what it becomes), ``fetch`` (resumable HTTP, Google Drive, checksums), ``install``
(unpacking into the CoOp layout), ``download`` (the ``download`` command), ``cli``.
"""
from .check import (  # noqa: F401  (the public names of the former tools/data.py)
    benchmark_readers,
    check_dataset,
    cmd_check,
    cmd_download_splits,
    drive_files,
    reader_cfg,
    sample_images,
    select,
)
from .cli import main  # noqa: F401
from .download import cmd_download  # noqa: F401
