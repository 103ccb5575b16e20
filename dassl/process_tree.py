"""Child processes that end with their parent, even when the parent is killed with -9.

The benchmark runner starts each run's script in a new session (so that a signal meant
for the runner does not reach the run behind its back). Without more, a runner killed
with ``kill -9`` would leave the script and its ``train.py`` running, unseen by the next
runner, which would start a second job beside it. On Linux a process can ask the kernel
for a signal when its parent dies (``prctl(PR_SET_PDEATHSIG)``): the runner asks it for
the script it starts (:func:`die_with_parent` as ``preexec_fn``), and marks the
environment (:data:`DIE_WITH_PARENT_ENV`) so that ``train.py``, the script's child, asks
it too (:func:`die_with_parent_if_asked`). A run started by hand (no mark) outlives its
shell as before. Elsewhere (macOS) these are no-ops.

No torch import here: the runner uses it without loading the engine.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
from typing import Callable, Optional

__all__ = ["DIE_WITH_PARENT_ENV", "die_with_parent", "die_with_parent_if_asked", "parent_death_preexec"]

#: Set (to "1") in a child's environment: the child and its children end with their parent.
DIE_WITH_PARENT_ENV = "SEMPT_DIE_WITH_PARENT"
_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _load_prctl() -> Optional[Callable[..., int]]:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return libc.prctl
    except (OSError, AttributeError):
        return None


# Resolved once at import: a preexec_fn runs between fork and exec, where loading a library
# (taking the import lock) could deadlock a threaded parent.
_PRCTL = _load_prctl()


def die_with_parent(sig: int = signal.SIGKILL, parent_pid: Optional[int] = None) -> bool:
    """Have the kernel send ``sig`` to this process when its parent ends; True if it will.

    ``parent_pid``: the parent expected; if it has already gone (the process was reparented
    before the request), this process exits at once.
    """
    if _PRCTL is None or _PRCTL(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
        return False
    if parent_pid is not None and os.getppid() != parent_pid:
        os.kill(os.getpid(), sig)
    return True


def parent_death_preexec(sig: int = signal.SIGKILL) -> Optional[Callable[[], None]]:
    """A ``subprocess.Popen`` ``preexec_fn`` that makes the child die with the calling
    process (None where that is not possible)."""
    if _PRCTL is None:
        return None
    parent = os.getpid()
    return lambda: die_with_parent(sig, parent)


def die_with_parent_if_asked(sig: int = signal.SIGTERM) -> bool:
    """:func:`die_with_parent` if the environment holds :data:`DIE_WITH_PARENT_ENV`.

    ``train.py`` calls it first thing: its parent is the script the runner started.
    """
    if os.environ.get(DIE_WITH_PARENT_ENV) != "1":
        return False
    armed = die_with_parent(sig)
    if armed and os.getppid() == 1:  # the parent died before the request: orphaned already
        os.kill(os.getpid(), sig)
    return armed
