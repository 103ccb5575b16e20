"""One process per run folder: an exclusive ``flock`` on ``<output dir>/.run.lock``.

``train.py`` holds it for the whole run, so two invocations on the same output folder
(two scripts, two benchmark runners, a SLURM job requeued while its previous attempt
still exits) can never write the same checkpoints and logs at once: the second one
stops at once with :data:`RUN_LOCKED_EXIT_CODE`. The kernel drops the lock when the
holder exits, even on SIGKILL, so a crashed run never leaves a stale lock. (``flock``
works across machines on NFSv4 and Lustre; a file system without it fails loudly.)

No torch import here: the benchmark runner probes locks without loading the engine.
"""
from __future__ import annotations

import fcntl
import os
import os.path as osp
import socket
import time
from typing import Optional

__all__ = ["LOCK_NAME", "RUN_LOCKED_EXIT_CODE", "RunLock", "RunLockedError", "lock_holder"]

LOCK_NAME = ".run.lock"
#: EX_TEMPFAIL from sysexits.h: "try again later", not a failure of the run itself.
RUN_LOCKED_EXIT_CODE = 75
# A probe (``lock_holder``) holds the lock for microseconds; retrying this long keeps a
# run from mistaking a probe for another run.
_ACQUIRE_RETRY_S = 1.0


class RunLockedError(RuntimeError):
    """Another process holds the run folder's lock."""


def _describe_holder(path: str) -> str:
    try:
        with open(path) as f:
            text = f.read().strip()
    except OSError:
        text = ""
    return text or "another process"


class RunLock:
    """The exclusive lock of one run folder, held from :meth:`acquire` to :meth:`release`."""

    def __init__(self, output_dir: str) -> None:
        self.output_dir = output_dir or "."
        self.path = osp.join(self.output_dir, LOCK_NAME)
        self._fd: Optional[int] = None

    def acquire(self) -> "RunLock":
        """Take the lock or raise :class:`RunLockedError` naming the holder."""
        os.makedirs(self.output_dir, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + _ACQUIRE_RETRY_S
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    raise RunLockedError(
                        f'The run folder "{self.output_dir}" is in use by {_describe_holder(self.path)} '
                        f"(it holds {self.path}). A run folder is run by one process at a time: wait "
                        "for that run to end (a finished run is then skipped, an interrupted one "
                        "resumed), or stop it."
                    ) from None
                time.sleep(0.05)
        # Who holds it, for the message above and for `python -m tools.benchmark status`.
        os.ftruncate(fd, 0)
        os.write(fd, f"host {socket.gethostname()}, pid {os.getpid()}, since "
                     f"{time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode())
        self._fd = fd
        return self

    def release(self) -> None:
        # The file stays: unlinking a lock file races with a process that just opened it.
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def lock_holder(output_dir: str) -> Optional[str]:
    """Who holds ``output_dir``'s run lock (a description), or None when nobody does."""
    path = osp.join(output_dir, LOCK_NAME)
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        # A shared lock is enough to test for an exclusive holder.
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return _describe_holder(path)
    finally:
        os.close(fd)  # also drops the shared lock, if taken
    return None
