"""Atomic file writes, shared by every writer of checkpoints and caches.

A file is written to a temporary file in the same folder, flushed to disk and renamed
over the target (``os.replace``): readers see the old file or the new one, never half
of one, and a failed write leaves the old file untouched.

The temporary file is created with mode ``0o666`` minus the umask, as ``open`` would
create the target itself (``tempfile.mkstemp`` makes ``0o600`` files, which lock the
other users of a shared data or results folder out). Its name,
``.<target name>.<pid>-<random>.tmp``, says which file and which process it belongs to,
so the owner of a folder can remove what a killed writer left
(:func:`remove_temporaries`).

A full disk surfaces as :class:`DiskFullError` naming the folder, whatever layer the
``ENOSPC`` came through (``torch.save`` reports it as "enforce fail ... unexpected pos",
with the ``OSError`` only in the chained traceback).
"""
from __future__ import annotations

import errno
import os
import os.path as osp
import re
import secrets
from typing import BinaryIO, Callable, List, Optional

__all__ = ["DiskFullError", "atomic_write", "atomic_write_bytes", "remove_temporaries", "temporary_path"]

TEMP_SUFFIX = ".tmp"
_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


class DiskFullError(OSError):
    """No space (or quota) left while writing a file; the message names the folder and the fix."""


def temporary_path(path: str) -> str:
    """A fresh temporary name next to ``path``, owned by this process."""
    directory, name = osp.split(path)
    return osp.join(directory, f".{name}.{os.getpid()}-{secrets.token_hex(4)}{TEMP_SUFFIX}")


def _temporary_pattern(name: Optional[str]) -> "re.Pattern[str]":
    # Also matches the ``tempfile.mkstemp`` names earlier versions used (``.<name>.<random>.tmp``).
    target = re.escape(name) if name is not None else "[^/]+"
    return re.compile(rf"^\.{target}\.[^/]+{re.escape(TEMP_SUFFIX)}$")


def _disk_full_cause(err: BaseException) -> Optional[OSError]:
    """The ``ENOSPC``/``EDQUOT`` error in ``err``'s chain, if any."""
    seen = set()
    current: Optional[BaseException] = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in _FULL_ERRNOS:
            return current
        current = current.__cause__ or current.__context__
    return None


def _open_new(path: str) -> BinaryIO:
    """A new file, for writing, with the permissions ``open`` would give it (0o666 minus the umask)."""
    return os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), "wb")


def atomic_write(path: str, write: Callable[[BinaryIO], None]) -> None:
    """Write ``path`` through ``write(binary file)``, atomically (see the module docstring).

    Raises :class:`DiskFullError` when the disk (or the quota) is full; the target keeps
    its previous content and the temporary file is removed.
    """
    directory = osp.dirname(path) or "."
    tmp = temporary_path(path)
    created = False
    try:
        with _open_new(tmp) as f:
            created = True
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        if created:
            try:
                os.remove(tmp)
            except OSError:
                pass  # already renamed
        cause = _disk_full_cause(err)
        if cause is not None and not isinstance(err, DiskFullError):
            what = "quota exceeded" if cause.errno == errno.EDQUOT else "no space left"
            raise DiskFullError(
                cause.errno,
                f'The disk holding "{osp.abspath(directory)}" is full ({what}) while writing '
                f'"{osp.basename(path)}" there. Nothing was lost: the file was not replaced and the '
                "previous version (if any) is intact. Free space on that disk (df -h "
                f'"{osp.abspath(directory)}") or write to a folder on another disk, then run again.',
            ) from err
        raise


def atomic_write_bytes(path: str, data: bytes) -> None:
    """:func:`atomic_write` of ``data``."""
    atomic_write(path, lambda f: f.write(data))


def _writer_alive(entry: str) -> bool:
    """Whether the process named in a temporary file's name is alive (and not this one)."""
    match = re.search(r"\.(\d+)-[0-9a-f]{8}" + re.escape(TEMP_SUFFIX) + "$", entry)
    if match is None:  # the mkstemp names of earlier versions say no writer
        return False
    pid = int(match.group(1))
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_temporaries(directory: str, name: Optional[str] = None) -> List[str]:
    """Remove the temporary files :func:`atomic_write` left in ``directory`` (those of the
    target ``name`` only, if given) whose writer is gone; return their paths.

    Meant for a folder that only this process writes (a run folder whose run lock it holds);
    even so a temporary file of a live process of this host is left alone.
    """
    if not osp.isdir(directory):
        return []
    pattern = _temporary_pattern(name)
    removed = []
    for entry in sorted(os.listdir(directory)):
        if pattern.match(entry) and not _writer_alive(entry):
            path = osp.join(directory, entry)
            try:
                os.remove(path)
            except FileNotFoundError:
                continue
            removed.append(path)
    return removed
