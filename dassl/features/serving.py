"""Serving a frozen encoder's features at run time: computed canonically, reused by item key.

When nothing a method learns reaches the image tower, an image's features depend only on
its pixels and the encoder, so they are computed once and reused by every run that would
compute the same thing (docs/feature-cache.md). Nothing changes a number, because the
features are always computed the same way, **canonically**: images go through the encoder
in chunks of exactly ``chunk`` rows (the last chunk padded with zeros), under the context
the owner gives (the trainer's precision, whatever the calling code set), without
gradient. On the CPU this makes each image's features independent of the other images of
its chunk and of their order (``tests/trainers/test_feature_cache.py``), so features
computed in a cold run of one method, read back by another, or recomputed with the cache
disabled are the same bits.

Which features a batch gets is decided by what the batch says its items are, never by
which tensor object it is: :meth:`ImageFeatureServer.features` takes an
:class:`~dassl.data.batch.ImageBatch` and serves its items by their keys (computing the
missing ones from its pixels); images without keys are computed, never served.
:meth:`~ImageFeatureServer.prefill` fills a whole pass's features before the pass, so that
the pass need not read its images. The shards on disk are ``dassl/features/store.py``.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, ContextManager, Dict, List, Optional, Sequence, Set, Tuple

import torch
from torch.utils.data import DataLoader, Subset

from dassl.data.batch import ITEM_KEY, ImageBatch, collate_items

from .store import FeatureStore

FLUSH_ROWS = 8192  # rows per shard written while a pass runs

#: The two kinds of pass, as ``stats()`` names them.
TRAINING, EVALUATION = "training", "evaluation"


def pass_kind(group: str) -> str:
    """``training`` or ``evaluation``: the second component of a group name (``<dataset>/train/...``)."""
    return TRAINING if group.split("/")[1:2] == ["train"] else EVALUATION


@dataclass
class PassCounts:
    """Items served from what was already there (``hits``) or computed (``misses``)."""

    hits: int = 0
    misses: int = 0


@dataclass(eq=False, repr=False)
class ImageFeatureServer:
    """Canonical computation and reuse of one frozen image encoder's features (module docstring).

    ``encode``: the plain computation of one chunk of images (e.g. ``ImageEncoder.compute``);
    ``context``: entered around each chunk (e.g. the trainer's exact autocast).
    ``store`` None: nothing is read from or written to disk (``FEATURE_CACHE.ENABLED
    False``), but the features are computed in the same canonical way, so the numbers
    are the same. ``persist_training`` False keeps training features in memory only
    (unseeded runs: nobody can reuse them).
    """

    encode: Callable[[torch.Tensor], torch.Tensor]
    device: torch.device
    chunk: int
    compute_id: str
    store: Optional[FeatureStore] = None
    persist_training: bool = True
    context: Callable[[], ContextManager] = contextlib.nullcontext
    counts: Dict[str, PassCounts] = field(default_factory=lambda: {TRAINING: PassCounts(), EVALUATION: PassCounts()})
    _tables: Dict[str, Dict[str, torch.Tensor]] = field(default_factory=dict)
    _pending: Dict[str, Tuple[List[str], List[torch.Tensor]]] = field(default_factory=dict)
    _prepared: Set[str] = field(default_factory=set)
    _in_use: Set[Path] = field(default_factory=set)
    _wrote: bool = False  # a shard was written since the size limit was last enforced
    _lazy_training_group: Optional[str] = None

    def __post_init__(self) -> None:
        if self.chunk < 1:
            raise ValueError(f"chunk={self.chunk}: images per encoder call must be >= 1")

    # -- computing -----------------------------------------------------------------------
    @torch.no_grad()
    def compute(self, images: torch.Tensor) -> torch.Tensor:
        """Features of ``images``: chunks of exactly ``chunk`` rows (the last one padded
        with zeros), under ``context``, without gradient."""
        images = images.to(self.device)
        outputs = []
        for start in range(0, images.shape[0], self.chunk):
            part = images[start:start + self.chunk]
            n = part.shape[0]
            if n < self.chunk:
                part = torch.cat([part, part.new_zeros((self.chunk - n, *part.shape[1:]))])
            with self.context():
                outputs.append(self.encode(part)[:n])
        return torch.cat(outputs)

    def features(self, images: ImageBatch) -> torch.Tensor:
        """The features of ``images``' items: by key from the table (the missing ones computed
        from the pixels and added); images without keys are computed."""
        if not images.identified:
            return self.compute(images.pixels)
        group, keys = images.group, images.keys
        self._follow_unprepared_epochs(group)
        table = self._table(group)
        missing = [i for i, key in enumerate(keys) if key not in table]
        if missing:
            if not images.has_pixels:
                raise RuntimeError(
                    f"Feature cache: {len(missing)} features of a prepared pass are missing ({group}): "
                    "its images were not read, so they cannot be computed"
                )
            self._add(group, [keys[i] for i in missing], self.compute(images.pixels[missing]))
        if group not in self._prepared:  # a prepared pass was counted by prefill
            counts = self.counts[pass_kind(group)]
            counts.hits += len(keys) - len(missing)
            counts.misses += len(missing)
        return torch.stack([table[key] for key in keys]).to(self.device)

    def _follow_unprepared_epochs(self, group: str) -> None:
        """A new training epoch read without ``prefill``: the previous one's table is not needed again."""
        if pass_kind(group) != TRAINING or group in self._prepared or group == self._lazy_training_group:
            return
        if self._lazy_training_group is not None:
            self.end_pass(self._lazy_training_group)
        self._lazy_training_group = group

    # -- passes --------------------------------------------------------------------------
    def prefill(self, wrapper, num_workers: int = 0, loader_batch: int = 0) -> None:
        """Make the table hold the features of every item of ``wrapper`` (a ``DatasetWrapper``
        whose items describe themselves): read the cache, compute what is missing, in
        index order, and write it."""
        group = wrapper.sample_group()
        keys = [wrapper.sample_key(i) for i in range(len(wrapper))]
        table = self._table(group)
        first_index: Dict[str, int] = {}
        for index, key in enumerate(keys):
            if key not in table and key not in first_index:
                first_index[key] = index
        missing = list(first_index.values())
        missed = sum(key in first_index for key in keys)
        counts = self.counts[pass_kind(group)]
        counts.hits += len(keys) - missed
        counts.misses += missed
        if missing:
            batch_size = max(self.chunk, loader_batch // self.chunk * self.chunk)
            loader = DataLoader(Subset(wrapper, missing), batch_size=batch_size, num_workers=num_workers,
                                collate_fn=collate_items)
            for batch in loader:
                self._add(group, batch[ITEM_KEY], self.compute(batch["img"]))
        self._flush(group)
        self._prepared.add(group)

    def end_pass(self, group: str) -> None:
        """After a pass: write what it computed; forget a training epoch's table (the next
        epoch has other augmentations)."""
        self._flush(group)
        self._prepared.discard(group)
        if pass_kind(group) == TRAINING:
            self._tables.pop(group, None)
        if self.store is not None:
            # Only a write can take the store over its limit; checking costs a walk of the
            # whole store, which would otherwise be paid after every epoch of every run.
            if self._wrote:
                self.store.enforce_limit(protect=self._in_use)
                self._wrote = False
            self._in_use.clear()

    def flush_all(self) -> None:
        for group in list(self._pending):
            self._flush(group)

    # -- reporting -----------------------------------------------------------------------
    def stats(self) -> Dict[str, Dict[str, int]]:
        """Items served so far per kind of pass: ``{"training": {"hits", "misses"}, "evaluation": {...}}``."""
        return {kind: {"hits": c.hits, "misses": c.misses} for kind, c in self.counts.items()}

    def summary(self) -> str:
        """The run's one log line."""
        train, evaluation = self.counts[TRAINING], self.counts[EVALUATION]
        counts = (f"training {train.hits} hits, {train.misses} misses; "
                  f"evaluation {evaluation.hits} hits, {evaluation.misses} misses")
        if self.store is None:
            return f"Image-feature cache disabled (FEATURE_CACHE.ENABLED False; features computed): {counts}"
        return f"Image-feature cache {self.store.root} ({self.compute_id}): {counts}"

    # -- tables --------------------------------------------------------------------------
    def _persists(self, group: str) -> bool:
        return self.store is not None and (self.persist_training or pass_kind(group) != TRAINING)

    def _table(self, group: str) -> Dict[str, torch.Tensor]:
        table = self._tables.get(group)
        if table is None:
            table = {}
            if self._persists(group):
                for path, keys, features in self.store.read_group(self.compute_id, group):
                    self._in_use.add(path)
                    table.update(zip(keys, features.unbind(0)))
            self._tables[group] = table
        return table

    def _add(self, group: str, keys: Sequence[str], features: torch.Tensor) -> None:
        features = features.detach().cpu()
        table = self._table(group)
        rows = features.unbind(0)
        table.update(zip(keys, rows))
        if self._persists(group):
            pending_keys, pending_rows = self._pending.setdefault(group, ([], []))
            pending_keys.extend(keys)
            pending_rows.extend(rows)
            if len(pending_keys) >= FLUSH_ROWS:
                self._flush(group)

    def _flush(self, group: str) -> None:
        keys, rows = self._pending.pop(group, ([], []))
        if keys:
            path = self.store.write_shard(self.compute_id, group, keys, torch.stack(rows))
            if path is not None:
                self._in_use.add(path)
                self._wrote = True


__all__ = ["EVALUATION", "TRAINING", "ImageFeatureServer", "PassCounts", "pass_kind"]
