"""The command line of ``python -m tools.data``."""
from __future__ import annotations

import argparse
import os
from typing import Optional, Sequence

from .check import cmd_check, cmd_download_splits
from .download import cmd_download

USAGE = """Data tools: download the 15 datasets into the CoOp layout, check a data root, fetch split files.

    python -m tools.data download --root $DATA all          # or some: eurosat dtd ...
    python -m tools.data download --dry-run all             # what would be fetched, from where, to where
    python -m tools.data check --root $DATA [--dataset eurosat]
    python -m tools.data download-splits --root $DATA [--dataset eurosat]

--root defaults to $DATA, else ./data. `download` exits with 0 when every dataset asked for is
ready, 1 when one failed, 2 when only manual steps remain (the summary prints them).
"""


def default_root() -> str:
    return os.environ.get("DATA") or "./data"


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.data", description=USAGE,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for command, help_text in (("check", "check the data root"), ("download-splits", "fetch split_zhou_*.json files")):
        p = sub.add_parser(command, help=help_text)
        p.add_argument("--root", default=default_root(), help="the DATA root (DATASET.ROOT); default $DATA or ./data")
        p.add_argument("--dataset", default=None, help="config name (eurosat) or reader name (EuroSAT); default all")
    p = sub.add_parser("download", help="fetch, verify and lay out datasets (and their split files)",
                       description="Fetch, verify and unpack datasets into the CoOp layout under --root. "
                                   "Resumable and idempotent: run it again after an interruption or a manual step.")
    p.add_argument("datasets", nargs="+", metavar="DATASET",
                   help="config names (eurosat), reader names (EuroSAT), or all")
    p.add_argument("--root", default=default_root(), help="the DATA root (DATASET.ROOT); default $DATA or ./data")
    p.add_argument("--archives", default=None,
                   help="folder of the downloaded archives, <folder>/<file> (default $ROOT/archives); "
                        "files a person puts there (ImageNet) are used as they are")
    p.add_argument("--mirror", default=None,
                   help="fetch every file, split files included, from this URL (or folder) holding "
                        "<dataset folder>/<file name>, e.g. <URL>/eurosat/EuroSAT.zip")
    p.add_argument("--jobs", type=int, default=4, help="datasets fetched at once (default 4)")
    p.add_argument("--dry-run", action="store_true",
                   help="print each file's source, size, checksum and target; fetch nothing (works offline)")
    p.add_argument("--keep-archives", action="store_true",
                   help="keep downloaded archives after unpacking (the folder can then serve as a --mirror)")
    p.add_argument("--skip-space-check", action="store_true", help="start even if the free space looks too small")
    args = parser.parse_args(argv)
    if args.command == "check":
        return cmd_check(args.root, args.dataset)
    if args.command == "download-splits":
        return cmd_download_splits(args.root, args.dataset)
    return cmd_download(args.root, args.datasets, archives=args.archives, mirror=args.mirror, jobs=args.jobs,
                        dry_run=args.dry_run, keep_archives=args.keep_archives,
                        skip_space_check=args.skip_space_check)
