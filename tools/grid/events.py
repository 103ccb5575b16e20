"""The append-only event log ``<output>/benchmark/events.jsonl``: one JSON object a line.

Every launcher, on this machine or on SLURM nodes, appends to the same file: what was
planned, queued, submitted, started, finished, failed, skipped or interrupted, with a
UTC timestamp, the host and the process. Nothing is ever rewritten. Appends hold an
exclusive ``flock`` so that lines from concurrent writers never interleave.

Event names and their fields (besides ``time``, ``unix``, ``host``, ``pid``):

- ``plan``: ``plan`` (file), ``runs`` (count), ``launcher``;
- ``queue``: ``runs`` (ids) about to be run by this local runner process;
- ``submit``: ``runs`` (one SLURM array task's chain), ``job_id``, ``stdout``, ``stderr``;
- ``start``: ``run``, ``console`` (the script's output), ``launcher`` [, ``job_id``, ``gpu``, ``threads``];
- ``done``: ``run``, ``seconds``;
- ``fail``: ``run``, ``rc``, ``console``, ``log`` [, ``job_id``];
- ``skip``: ``run``, ``reason`` (a run it needs failed);
- ``elsewhere``: ``run``, ``holder`` (another process holds the run folder's lock);
- ``interrupt``: ``run``, ``reason`` (stopped by a signal; the next ``run`` resumes it);
- ``requeue``: ``runs``, ``job_id`` (SLURM preemption or time limit; submitit requeues the job).
"""
from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

EVENTS_NAME = "events.jsonl"


class EventLog:
    """Append to and read ``<benchmark dir>/events.jsonl``."""

    def __init__(self, benchmark_dir: Path) -> None:
        self.path = Path(benchmark_dir) / EVENTS_NAME

    def append(self, event: str, lock_timeout_s: Optional[float] = None, **fields: Any) -> Dict[str, Any]:
        """Append one event. ``lock_timeout_s``: from a signal handler, which may have
        interrupted this very process inside an append, give up waiting for the lock after
        that long and write anyway (one short O_APPEND write) rather than deadlock."""
        now = time.time()
        record = {"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)), "unix": round(now, 3),
                  "event": event, "host": socket.gethostname(), "pid": os.getpid(), **fields}
        line = json.dumps(record) + "\n"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as f:
            if lock_timeout_s is None:
                fcntl.flock(f, fcntl.LOCK_EX)
            else:
                deadline = time.monotonic() + lock_timeout_s
                while True:
                    try:
                        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        break
                    except BlockingIOError:
                        if time.monotonic() > deadline:
                            break
                        time.sleep(0.01)
            f.write(line)
            f.flush()
        return record

    def read(self) -> List[Dict[str, Any]]:
        return list(self)

    def __iter__(self) -> Iterator[Dict[str, Any]]:
        if not self.path.is_file():
            return
        with open(self.path) as f:
            for line in f:
                line = line.strip()
                if not line:
                    continue
                try:
                    yield json.loads(line)
                except json.JSONDecodeError:
                    # Only a writer killed mid-line can leave this; the other lines stand.
                    continue


def runs_of(event: Dict[str, Any]) -> List[str]:
    """The run ids an event is about."""
    if "run" in event:
        return [event["run"]]
    return list(event.get("runs", []))


def latest_by_run(events: List[Dict[str, Any]], names: Optional[set] = None) -> Dict[str, Dict[str, Any]]:
    """The last event (of the given names, default all) for each run id."""
    latest: Dict[str, Dict[str, Any]] = {}
    for event in events:
        if names is not None and event.get("event") not in names:
            continue
        for run_id in runs_of(event):
            latest[run_id] = event
    return latest
