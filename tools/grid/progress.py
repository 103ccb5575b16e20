"""The live progress of ``run``: runs done / total, failures, running and queued, ETA.

On a terminal, a tqdm bar redrawn in place; elsewhere (CI logs, ``nohup``, SLURM output
files) one plain line each time a run ends or every 30 s, which stays readable in a file.
"""
from __future__ import annotations

import sys
import time
from typing import Optional

from tqdm import tqdm

QUIET_INTERVAL_S = 30.0


def _eta(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class Progress:
    """Progress of a grid; the launcher sets the counts (runs done elsewhere count too)."""

    def __init__(self, total: int, initial: int, desc: str = "benchmark", enabled: bool = True) -> None:
        self.total, self.initial, self.desc, self.enabled = total, initial, desc, enabled
        self.tty = sys.stderr.isatty()
        self.start = time.monotonic()
        self._done = initial
        self._last_line = 0.0
        self.bar: Optional[tqdm] = None
        if enabled and self.tty:
            self.bar = tqdm(total=total, initial=initial, desc=desc, unit="run", dynamic_ncols=True, file=sys.stderr)

    def _status(self, failed: int, running: int, queued: int) -> str:
        parts = [f"running {running}"] if running else []
        parts += [f"queued {queued}"] if queued else []
        parts += [f"failed {failed}"] if failed else []
        return ", ".join(parts)

    def update(self, done: int, failed: int = 0, running: int = 0, queued: int = 0) -> None:
        if not self.enabled:
            return
        changed = done != self._done
        self._done = done
        status = self._status(failed, running, queued)
        if self.bar is not None:
            if done != self.bar.n:
                self.bar.update(done - self.bar.n)
            self.bar.set_postfix_str(status)
            return
        now = time.monotonic()
        if not changed and now - self._last_line < QUIET_INTERVAL_S:
            return
        self._last_line = now
        new = done - self.initial
        eta = _eta((now - self.start) / new * (self.total - done)) if new > 0 and done < self.total else "?"
        print(f"{self.desc}: {done}/{self.total} runs done{', ' + status if status else ''}, "
              f"elapsed {_eta(now - self.start)}, ETA {eta}", file=sys.stderr, flush=True)

    def write(self, message: str) -> None:
        if self.bar is not None:
            self.bar.write(message, file=sys.stderr)
        else:
            print(message, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
