"""``setup_logger``: tee stdout *and* stderr (warnings, tqdm, tracebacks) into ``log.txt``.

Differences from upstream, on purpose (docs/upstream-differences.md, "Logs and result parsing"):
- stderr is recorded too; carriage-return progress updates (tqdm) are collapsed so the
  file gets only each bar's final state;
- an existing ``log.txt`` is kept by renaming it to ``log.txt-<its mtime>`` and the new
  run writes ``log.txt``, so ``log.txt`` is always the latest run (a resumed run's result
  is where ``parse_test_res.py`` looks);
- ``close()`` restores the original streams (upstream never does).
"""
from __future__ import annotations

import io
import os
import os.path as osp
import sys
import time
import traceback
import warnings
from typing import IO, Optional

from .tools import mkdir_if_missing

__all__ = ["Logger", "setup_logger"]

_active: Optional["Logger"] = None


class _Tee(io.TextIOBase):
    """Writes to the console stream and to the log file."""

    def __init__(self, console: IO[str], file: IO[str], collapse_cr: bool) -> None:
        self.console = console
        self.file = file
        self.collapse_cr = collapse_cr
        self._partial = ""  # the unfinished line (stderr only)

    def write(self, msg: str) -> int:
        self.console.write(msg)
        if self.file.closed:
            return len(msg)
        if not self.collapse_cr:
            self.file.write(msg)
        else:
            # Keep only what follows the last "\r" of each line.
            text = self._partial + msg
            *lines, self._partial = text.split("\n")
            for line in lines:
                self.file.write(line.rsplit("\r", 1)[-1] + "\n")
            self._partial = self._partial.rsplit("\r", 1)[-1]
        if "\n" in msg:
            self.file.flush()
        return len(msg)

    def flush(self) -> None:
        self.console.flush()
        if not self.file.closed:
            self.file.flush()

    def finish(self) -> None:
        if self._partial and not self.file.closed:
            self.file.write(self._partial + "\n")
        self._partial = ""

    def isatty(self) -> bool:  # lets tqdm/colour decisions follow the real console
        return self.console.isatty()

    def fileno(self) -> int:
        return self.console.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self.console, "encoding", "utf-8")


class Logger:
    """Tees ``sys.stdout`` and ``sys.stderr`` into ``fpath`` until :meth:`close`."""

    def __init__(self, fpath: str) -> None:
        mkdir_if_missing(osp.dirname(fpath) or ".")
        self.fpath = fpath
        self.file = open(fpath, "w")
        self._stdout, self._stderr = sys.stdout, sys.stderr
        self.stdout = _Tee(sys.stdout, self.file, collapse_cr=False)
        self.stderr = _Tee(sys.stderr, self.file, collapse_cr=True)
        sys.stdout, sys.stderr = self.stdout, self.stderr
        # Warnings go through our stderr tee even where a test runner or a library
        # has redirected ``warnings.showwarning``.
        self._showwarning = warnings.showwarning
        warnings.showwarning = self._show_warning

    def _show_warning(self, message, category, filename, lineno, file=None, line=None) -> None:
        self.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))

    def log_exception(self, exc: BaseException) -> None:
        """Write a traceback to the log file only (the console gets it from the interpreter)."""
        if not self.file.closed:
            self.stderr.finish()
            self.file.write("".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
            self.file.flush()

    def close(self) -> None:
        global _active
        if self.file.closed:
            return
        self.stderr.finish()
        # Only restore if nobody replaced the streams after us.
        if sys.stdout is self.stdout:
            sys.stdout = self._stdout
        if sys.stderr is self.stderr:
            sys.stderr = self._stderr
        if warnings.showwarning == self._show_warning:
            warnings.showwarning = self._showwarning
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()
        if _active is self:
            _active = None


def _keep_old_log(fpath: str) -> None:
    stamp = time.strftime("%Y-%m-%d-%H-%M-%S", time.localtime(osp.getmtime(fpath)))
    target, n = f"{fpath}-{stamp}", 1
    while osp.exists(target):
        target, n = f"{fpath}-{stamp}-{n}", n + 1
    os.replace(fpath, target)


def setup_logger(output: Optional[str] = None) -> Optional[Logger]:
    """Log stdout/stderr to ``output`` (a ``.txt``/``.log`` file) or ``output/log.txt``.

    Returns the :class:`Logger` (``None`` if ``output`` is None); a logger set up
    earlier in this process is closed first.
    """
    global _active
    if output is None:
        return None
    if output.endswith(".txt") or output.endswith(".log"):
        fpath = output
    else:
        fpath = osp.join(output, "log.txt")
    if _active is not None:
        _active.close()
    if osp.exists(fpath):
        _keep_old_log(fpath)
    _active = Logger(fpath)
    return _active
