"""What a run costs: wall time per phase, images per second, peak memory, written as ``cost.json``.

A trainer owns one :class:`RunCost` (``trainer.cost``). The engine times its two phases,
``training`` (``TrainerBase.train``) and ``evaluation`` (``SimpleTrainer.test``), with
:func:`measured`, and counts the images of each batch; ``train.py`` adds the ``setup``
phase (config, data, model, checkpoint loading) and calls :func:`write_run_cost` once the
run has finished. A phase entered inside another (the final test inside training, a
validation pass inside an epoch) is counted in the inner phase only, so the phases add up
to the run's wall time.

``cost.json`` sits beside the run's ``log.txt``; its fields are documented in the README
("What a run costs").
"""
from __future__ import annotations

import functools
import json
import os
import os.path as osp
import platform
import resource
import sys
import time
from typing import Any, Callable, Dict, List, Optional, Tuple, TypeVar

import torch

from dassl.utils.atomic_io import atomic_write_bytes

COST_FILE = "cost.json"
COST_SCHEMA = 1
PHASES = ("setup", "training", "evaluation")

_F = TypeVar("_F", bound=Callable[..., Any])


class RunCost:
    """Wall time and image counts per phase of one run (``time.perf_counter`` clock)."""

    def __init__(self) -> None:
        self.seconds: Dict[str, float] = {name: 0.0 for name in PHASES}
        self.images: Dict[str, int] = {name: 0 for name in PHASES}
        self.entries: Dict[str, int] = {name: 0 for name in PHASES}
        # The open phases, innermost last: (name, start time, time spent in nested phases).
        self._open: List[List[Any]] = []

    def begin(self, name: str) -> None:
        self._check(name)
        self._open.append([name, time.perf_counter(), 0.0])

    def end(self, name: str) -> None:
        if not self._open or self._open[-1][0] != name:
            opened = [entry[0] for entry in self._open]
            raise RuntimeError(f"RunCost.end({name!r}) but the open phases are {opened}")
        _, started, nested = self._open.pop()
        elapsed = time.perf_counter() - started
        self.seconds[name] += elapsed - nested
        self.entries[name] += 1
        if self._open:  # the enclosing phase does not count this time a second time
            self._open[-1][2] += elapsed

    def add_seconds(self, name: str, seconds: float) -> None:
        """Time measured outside a phase context (``train.py``'s setup)."""
        self._check(name)
        self.seconds[name] += seconds
        self.entries[name] += 1

    def count_images(self, name: str, n: int) -> None:
        self._check(name)
        self.images[name] += int(n)

    def phases(self) -> Dict[str, Dict[str, Any]]:
        """``{phase: {seconds, images, images_per_second, entries}}``; throughput None without images."""
        report = {}
        for name in PHASES:
            seconds, images = self.seconds[name], self.images[name]
            report[name] = {
                "seconds": round(seconds, 6),
                "images": images,
                "images_per_second": round(images / seconds, 3) if images and seconds > 0 else None,
                "entries": self.entries[name],
            }
        return report

    @staticmethod
    def _check(name: str) -> None:
        if name not in PHASES:
            raise ValueError(f"unknown cost phase {name!r}; one of {', '.join(PHASES)}")


def measured(phase: str) -> Callable[[_F], _F]:
    """Decorate a trainer method so that its calls count as ``phase`` in ``self.cost``."""

    def decorate(method: _F) -> _F:
        @functools.wraps(method)
        def wrapper(self, *args, **kwargs):
            cost: Optional[RunCost] = getattr(self, "cost", None)
            if cost is None:
                return method(self, *args, **kwargs)
            cost.begin(phase)
            try:
                return method(self, *args, **kwargs)
            finally:
                cost.end(phase)

        return wrapper  # type: ignore[return-value]

    return decorate


def batch_size(batch: Any) -> int:
    """Images in a data-loader batch (its ``label`` tensor; else its ``img``)."""
    for key in ("label", "img"):
        value = batch.get(key) if isinstance(batch, dict) else None
        if value is not None and hasattr(value, "shape") and len(value.shape) > 0:
            return int(value.shape[0])
    return 0


# --------------------------------------------------------------------- memory
def peak_rss_mb() -> Tuple[float, float]:
    """(this process, its largest finished child) peak resident set size, in MiB."""
    # ru_maxrss is in KiB on Linux and in bytes on macOS.
    unit = 1.0 if sys.platform == "darwin" else 1024.0
    to_mb = unit / (1024.0 * 1024.0)
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return round(own * to_mb, 1), round(children * to_mb, 1)


def cuda_peak_mb(device: torch.device) -> Dict[str, Optional[float]]:
    if device.type != "cuda" or not torch.cuda.is_available():
        return {"max_memory_allocated_mb": None, "max_memory_reserved_mb": None}
    mib = 1024.0 * 1024.0
    return {"max_memory_allocated_mb": round(torch.cuda.max_memory_allocated(device) / mib, 1),
            "max_memory_reserved_mb": round(torch.cuda.max_memory_reserved(device) / mib, 1)}


def describe_device(device: torch.device) -> Dict[str, Any]:
    if device.type == "cuda" and torch.cuda.is_available():
        name = torch.cuda.get_device_name(device)
    else:
        name = platform.processor() or platform.machine()
    return {"type": device.type, "name": name, "torch_threads": torch.get_num_threads()}


# --------------------------------------------------------------------- record
def cost_record(trainer: Any) -> Dict[str, Any]:
    """The ``cost.json`` content of ``trainer``'s run so far."""
    device = getattr(trainer, "device", torch.device("cpu"))
    cfg = getattr(trainer, "cfg", None)
    precision = getattr(trainer, "precision", None)  # trainers.common.precision.Precision, when a CLIP trainer
    server = getattr(trainer, "feature_server", None)  # None when the feature cache is off or unused
    cost: RunCost = trainer.cost
    own_rss, children_rss = peak_rss_mb()
    phases = cost.phases()
    return {
        "schema": COST_SCHEMA,
        "trainer": cfg.TRAINER.NAME if cfg is not None else type(trainer).__name__,
        "dataset": cfg.DATASET.NAME if cfg is not None else None,
        "seed": cfg.SEED if cfg is not None else None,
        "device": describe_device(device),
        "precision": getattr(precision, "name", None),
        "precision_requested": getattr(precision, "requested", None),
        "phases": phases,
        "total_seconds": round(sum(p["seconds"] for p in phases.values()), 6),
        "epochs": {"start": getattr(trainer, "start_epoch", None), "max": getattr(trainer, "max_epoch", None)},
        "peak_rss_mb": own_rss,
        "peak_rss_children_mb": children_rss,
        "cuda": cuda_peak_mb(device),
        "feature_cache": server.stats() if server is not None else None,
        "written_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def write_run_cost(trainer: Any, output_dir: str) -> str:
    """Write ``<output_dir>/cost.json`` for ``trainer``'s finished run; return its path."""
    path = osp.join(output_dir, COST_FILE)
    text = json.dumps(cost_record(trainer), indent=2) + "\n"
    os.makedirs(output_dir, exist_ok=True)
    atomic_write_bytes(str(path), text.encode())  # readers never see half a file
    print(summary_line(trainer.cost) + f" (written to {path})")
    return path


def summary_line(cost: RunCost) -> str:
    """The log's one line about the run's cost."""
    parts = []
    for name, phase in cost.phases().items():
        speed = phase["images_per_second"]
        parts.append(f"{name} {phase['seconds']:.1f} s" + (f" ({speed:.1f} img/s)" if speed else ""))
    own, _ = peak_rss_mb()
    return f"Run cost: {', '.join(parts)}; peak RSS {own:.0f} MiB"


__all__ = ["COST_FILE", "PHASES", "RunCost", "measured", "batch_size", "cost_record", "write_run_cost", "summary_line",
           "peak_rss_mb"]
