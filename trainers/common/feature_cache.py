"""Exact image-feature caches for methods whose image encoder is frozen (docs/feature-cache.md).

When nothing a method learns reaches the image tower, an image's features depend only on
its pixels and the encoder, so they are computed once and reused by every run that would
compute the same thing: any method, seed or class subset, for the test sets; for
training, the same augmented image (its augmentation is a pure function of the seed,
the epoch and the item's index, ``dassl/data/data_manager.py``). Nothing changes a
number, because the features are always computed the same way:

* **canonically**: images go through the encoder in chunks of exactly ``CHUNK`` rows
  (the last chunk padded with zeros), under the trainer's precision whatever the
  calling code set, without gradient. On the CPU this makes each image's features
  independent of the other images of its chunk and of their order
  (``tests/trainers/test_feature_cache.py`` checks it), so features computed in a cold
  run of one method, read back by another, or recomputed with the cache disabled are
  the same bits;
* **keyed by what they are made of**: the image file (path under ``DATASET.ROOT``,
  size, modification time), the transform (its description and the torchvision/PIL
  versions), the augmentation seed (training), and the computation: the backbone
  checkpoint, the precision, ``CHUNK``, torch's version and the device
  (``compute_identity``).

Pieces:

* :class:`FeatureStore`: the shards on disk (``<dir>/v1/<compute id>/<dataset>/<group>/*.feat``):
  written atomically (temporary file + rename) under names no other writer uses, so
  runs may fill the same group at once; each shard carries its length and a SHA-256
  of its contents, and a shard that fails the check is deleted and recomputed, never
  used; least-recently-used shards are evicted beyond ``MAX_SIZE_GB``.
* :class:`ImageFeatureServer`: attached to a frozen ``ImageEncoder``
  (``ImageEncoder.feature_server``); computes canonically, serves the batch the trainer
  registered from its table (``register_batch``), and fills a whole pass's features
  before the pass (``prefill``) so that the pass reads no image.
* :func:`attach_feature_server`: the trainer's entry point (``PromptTrainer.build_model``).
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import secrets
import shutil
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Set, Tuple

import torch
from torch import nn
from torch.utils.data import DataLoader, Subset

from .image_encoder import ImageEncoder
from .precision import Precision
from .cache_identity import project_cache_dir

LAYOUT_VERSION = "v1"
SHARD_SUFFIX = ".feat"
TEMP_PREFIX = ".tmp-"
SHARD_MAGIC = b"SEMPT-FEATURES\n"
KEY_BYTES = 16  # sample keys are 128-bit digests (DatasetWrapper.sample_key)
FLUSH_ROWS = 8192  # rows per shard written while a pass runs
STALE_TEMP_SECONDS = 24 * 3600  # a temporary file this old belongs to a writer that died
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def default_feature_cache_dir() -> Path:
    """``$SEMPT_CACHE_DIR/features`` or ``~/.cache/sempt/features``."""
    return project_cache_dir() / "features"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_description(device: torch.device) -> str:
    """What decides the bits a kernel produces on ``device``: the chip (BLAS libraries pick
    their blocking from it), the libraries and, on the CPU, the number of threads (how a
    reduction is split between them can change its last bits: measured with 3 threads
    against 1, 2 and 4)."""
    device = torch.device(device)
    if device.type == "cuda":
        return (
            f"{torch.cuda.get_device_name(device)} cuda {torch.version.cuda} cudnn {torch.backends.cudnn.version()} "
            f"tf32 {torch.backends.cuda.matmul.allow_tf32}/{torch.backends.cudnn.allow_tf32}"
        )
    if device.type == "cpu":
        return f"cpu {_cpu_model()} {torch.backends.cpu.get_cpu_capability()} threads {torch.get_num_threads()}"
    return device.type


def compute_identity(
    backbone: str, encoder: ImageEncoder, precision: Precision, chunk: int, device: torch.device
) -> Tuple[str, Dict[str, Any]]:
    """``(id, description)`` of the computation of features: everything but the image.

    ``backbone`` is :func:`~trainers.common.cache_identity.backbone_key` of the checkpoint.
    """
    description = {
        "backbone": backbone,
        "encoder": type(encoder.visual).__name__,
        "input_resolution": int(getattr(encoder.visual, "input_resolution", 0)),
        "weight_dtype": str(encoder.dtype),
        "precision": precision.name,
        "autocast": str(precision.autocast_dtype),
        "chunk": int(chunk),
        "torch": torch.__version__,
        "device": device_description(device),
    }
    digest = hashlib.sha256(json.dumps(description, sort_keys=True).encode()).hexdigest()[:12]
    return f"{backbone}-{precision.name}-{digest}", description


def _path_component(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "._-" else "-" for ch in text) or "-"


# ------------------------------------------------------------------------------- shards

class CorruptShard(ValueError):
    """A shard file that is not what its header says (truncated, altered, foreign)."""


def encode_shard(keys: Sequence[str], features: torch.Tensor) -> bytes:
    """The bytes of a shard: magic, header length, JSON header, then keys and features."""
    features = features.detach().contiguous().cpu()
    dtype_name = next((n for n, d in DTYPES.items() if d == features.dtype), None)
    if dtype_name is None or features.dim() != 2 or features.shape[0] != len(keys):
        raise ValueError(f"cannot store features of shape {tuple(features.shape)} / {features.dtype} for {len(keys)} keys")
    payload = b"".join(bytes.fromhex(k) for k in keys) + features.view(torch.uint8).numpy().tobytes()
    header = json.dumps({
        "rows": len(keys), "dim": int(features.shape[1]), "dtype": dtype_name, "key_bytes": KEY_BYTES,
        "payload_bytes": len(payload), "sha256": hashlib.sha256(payload).hexdigest(),
    }).encode()
    return SHARD_MAGIC + struct.pack("<I", len(header)) + header + payload


def _parse_header(data: bytes) -> Tuple[Dict[str, Any], int]:
    """The JSON header of a shard (validated) and where its payload starts."""
    start = len(SHARD_MAGIC) + 4
    if len(data) < start or not data.startswith(SHARD_MAGIC):
        raise CorruptShard("not a feature shard (bad magic)")
    (header_len,) = struct.unpack("<I", data[len(SHARD_MAGIC):start])
    try:
        header = json.loads(data[start:start + header_len])
        for name in ("rows", "dim", "payload_bytes"):
            header[name] = int(header[name])
    except (ValueError, KeyError, TypeError) as err:
        raise CorruptShard(f"unreadable header ({err})") from None
    if header.get("dtype") not in DTYPES or not isinstance(header.get("sha256"), str):
        raise CorruptShard("unreadable header (dtype or checksum missing)")
    return header, start + header_len


def read_shard_header(path: Path) -> Dict[str, Any]:
    """A shard's header (``rows``, ``dim``, ``dtype``, ...) without reading its payload."""
    with open(path, "rb") as f:
        head = f.read(len(SHARD_MAGIC) + 4)
        if len(head) == len(SHARD_MAGIC) + 4 and head.startswith(SHARD_MAGIC):
            head += f.read(struct.unpack("<I", head[len(SHARD_MAGIC):])[0])
    return _parse_header(head)[0]


def decode_shard(data: bytes) -> Tuple[List[str], torch.Tensor]:
    """``(keys, features)`` of a shard's bytes; :class:`CorruptShard` if anything does not check out."""
    header, start = _parse_header(data)
    rows, dim, dtype = header["rows"], header["dim"], DTYPES[header["dtype"]]
    expected, checksum = header["payload_bytes"], header["sha256"]
    payload = data[start:]
    item = torch.empty((), dtype=dtype).element_size()
    if len(payload) != expected or expected != rows * (KEY_BYTES + dim * item):
        raise CorruptShard(f"{len(payload)} payload bytes, the header says {expected} for {rows} rows of {dim}")
    if hashlib.sha256(payload).hexdigest() != checksum:
        raise CorruptShard("checksum mismatch")
    keys = [payload[i * KEY_BYTES:(i + 1) * KEY_BYTES].hex() for i in range(rows)]
    features = torch.frombuffer(bytearray(payload[rows * KEY_BYTES:]), dtype=dtype).reshape(rows, dim)
    return keys, features


@dataclass
class ShardInfo:
    path: Path
    size: int
    mtime: float
    compute_id: str
    group: str  # "<dataset>/eval", "<dataset>/train/seed<S>/epoch<E>"


class FeatureStore:
    """Feature shards under ``root`` (see the module docstring), at most ``max_bytes`` of them."""

    def __init__(self, root: Path | str, max_bytes: Optional[int] = None) -> None:
        self.root = Path(root).expanduser()
        self.base = self.root / LAYOUT_VERSION
        self.max_bytes = max_bytes
        self.writable = True  # False after a write failed (read-only folder, full disk): reads go on

    def group_dir(self, compute_id: str, group: str) -> Path:
        return self.base / _path_component(compute_id) / Path(*(_path_component(p) for p in group.split("/")))

    def describe(self, compute_id: str, description: Dict[str, Any]) -> None:
        """Write ``<compute id>/compute.json`` (what the id stands for, for ``tools.cache info``) once."""
        path = self.base / _path_component(compute_id) / "compute.json"
        if not path.is_file():
            self._write_atomic(path, json.dumps(description, indent=2, sort_keys=True).encode())

    def read_group(self, compute_id: str, group: str) -> Iterator[Tuple[Path, List[str], torch.Tensor]]:
        """The valid shards of a group as ``(path, keys, features)``; marks them used (LRU).

        A shard that fails its checks is reported and deleted: its features will be
        computed again. One that vanishes meanwhile (evicted by another run) is skipped.
        """
        directory = self.group_dir(compute_id, group)
        if not directory.is_dir():
            return
        for path in sorted(directory.glob(f"*{SHARD_SUFFIX}")):
            try:
                keys, features = decode_shard(path.read_bytes())
            except FileNotFoundError:
                continue
            except CorruptShard as err:
                print(f"Feature cache: deleting the corrupt shard {path} ({err}); its features will be recomputed")
                self._remove(path)
                continue
            try:
                os.utime(path)  # last use, for the LRU eviction
            except OSError:
                pass  # a read-only cache is still read
            yield path, keys, features

    def write_shard(self, compute_id: str, group: str, keys: Sequence[str], features: torch.Tensor) -> Optional[Path]:
        """Write one shard under a name no other writer uses; return its path (None: not written)."""
        name = f"{time.time_ns()}-{os.getpid()}-{secrets.token_hex(4)}{SHARD_SUFFIX}"
        path = self.group_dir(compute_id, group) / name
        return path if self._write_atomic(path, encode_shard(keys, features)) else None

    def _write_atomic(self, path: Path, data: bytes) -> bool:
        """Temporary file, flushed, renamed; False (and writing stops, with one note) if the
        folder cannot be written: a run never fails because of its cache."""
        if not self.writable:
            return False
        try:
            self._write_file(path, data)
            return True
        except OSError as err:
            self.writable = False
            print(f"Feature cache: cannot write to {self.root} ({err}); this run reads the cache but "
                  "adds nothing to it (set FEATURE_CACHE.DIR to a writable folder)")
            return False

    @staticmethod
    def _write_file(path: Path, data: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.parent / f"{TEMP_PREFIX}{os.getpid()}-{secrets.token_hex(4)}"
        try:
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        finally:
            if tmp.exists():
                tmp.unlink()

    @staticmethod
    def _remove(path: Path) -> None:
        try:
            path.unlink()
        except OSError:
            pass  # gone already (another run), or a read-only cache

    # -- size ------------------------------------------------------------------------------
    def shards(self) -> List[ShardInfo]:
        found = []
        if not self.base.is_dir():
            return found
        for dirpath, _, filenames in os.walk(self.base):
            for name in filenames:
                if not name.endswith(SHARD_SUFFIX):
                    continue
                path = Path(dirpath) / name
                try:
                    stat = path.stat()
                except FileNotFoundError:
                    continue
                parts = path.relative_to(self.base).parts
                found.append(ShardInfo(path, stat.st_size, stat.st_mtime, parts[0], "/".join(parts[1:-1])))
        return found

    def remove_stale_temporaries(self) -> None:
        """Temporary files of writers that died (older than a day)."""
        if not self.base.is_dir():
            return
        now = time.time()
        for dirpath, _, filenames in os.walk(self.base):
            for name in filenames:
                path = Path(dirpath) / name
                try:
                    if name.startswith(TEMP_PREFIX) and now - path.stat().st_mtime > STALE_TEMP_SECONDS:
                        self._remove(path)
                except FileNotFoundError:
                    pass

    def enforce_limit(self, protect: Set[Path] = frozenset()) -> int:
        """Delete least-recently-used shards (not in ``protect``) until the store fits
        ``max_bytes``; return the number of bytes freed."""
        if self.max_bytes is None:
            return 0
        shards = self.shards()
        total = sum(s.size for s in shards)
        freed = 0
        for shard in sorted(shards, key=lambda s: s.mtime):
            if total - freed <= self.max_bytes:
                break
            if shard.path in protect:
                continue
            self._remove(shard.path)
            freed += shard.size
        if freed:
            print(f"Feature cache: evicted {freed / 2**20:.1f} MiB of least recently used features "
                  f"(limit {self.max_bytes / 2**30:.2f} GiB)")
        return freed

    def clear(self, dataset: Optional[str] = None) -> int:
        """Delete everything (or one dataset's groups); return the number of shards deleted."""
        if not self.base.is_dir():
            return 0
        if dataset is None:
            count = len(self.shards())
            shutil.rmtree(self.base)
            return count
        count = 0
        for compute_dir in self.base.iterdir():
            target = compute_dir / _path_component(dataset)
            if target.is_dir():
                count += sum(1 for _ in target.rglob(f"*{SHARD_SUFFIX}"))
                shutil.rmtree(target)
        return count


# ------------------------------------------------------------------------------- serving

@dataclass
class RegisteredBatch:
    """The batch a trainer is working on: its image tensor (real pixels, or an empty
    placeholder when the pass reads no image) and the keys of its items."""

    image: torch.Tensor
    keys: List[str]
    group: str
    features: Optional[torch.Tensor] = None


@dataclass
class PassCounts:
    hits: int = 0
    misses: int = 0


@dataclass(eq=False, repr=False)
class ImageFeatureServer:
    """Canonical computation and reuse of one frozen image encoder's features (module docstring).

    ``store`` None: nothing is read from or written to disk (``FEATURE_CACHE.ENABLED
    False``), but the features are computed in the same canonical way, so the numbers
    are the same. ``persist_training`` False keeps training features in memory only
    (unseeded runs: nobody can reuse them).
    """

    encoder: ImageEncoder
    precision: Precision
    device: torch.device
    chunk: int
    compute_id: str
    store: Optional[FeatureStore] = None
    persist_training: bool = True
    counts: Dict[str, PassCounts] = field(default_factory=lambda: {"train": PassCounts(), "eval": PassCounts()})
    _tables: Dict[str, Dict[str, torch.Tensor]] = field(default_factory=dict)
    _pending: Dict[str, Tuple[List[str], List[torch.Tensor]]] = field(default_factory=dict)
    _prepared: Set[str] = field(default_factory=set)
    _in_use: Set[Path] = field(default_factory=set)
    _wrote: bool = False  # a shard was written since the size limit was last enforced
    _batch: Optional[RegisteredBatch] = None
    _lazy_training_group: Optional[str] = None

    # -- computing -----------------------------------------------------------------------
    @torch.no_grad()
    def compute(self, images: torch.Tensor) -> torch.Tensor:
        """Features of ``images``: chunks of exactly ``chunk`` rows (the last one padded
        with zeros), under the trainer's precision, without gradient."""
        ImageEncoder.check_pixels(images)
        images = images.to(self.device)
        outputs = []
        for start in range(0, images.shape[0], self.chunk):
            part = images[start:start + self.chunk]
            n = part.shape[0]
            if n < self.chunk:
                part = torch.cat([part, part.new_zeros((self.chunk - n, *part.shape[1:]))])
            with self.precision.exact_autocast():
                outputs.append(self.encoder.compute(part)[:n])
        return torch.cat(outputs)

    def features(self, image: torch.Tensor) -> torch.Tensor:
        """``ImageEncoder.forward`` without prompts: the registered batch's features from
        the table (computing the missing ones), or any other images' features, computed."""
        batch = self._batch
        if batch is not None and image is batch.image:
            if batch.features is None:
                batch.features = self._serve(batch)
            return batch.features
        return self.compute(image)

    def _serve(self, batch: RegisteredBatch) -> torch.Tensor:
        table = self._table(batch.group)
        missing = [i for i, key in enumerate(batch.keys) if key not in table]
        if missing:
            if batch.image.numel() == 0:
                raise RuntimeError(f"Feature cache: {len(missing)} features of a prepared pass are missing ({batch.group})")
            self._add(batch.group, [batch.keys[i] for i in missing], self.compute(batch.image[missing]))
        if batch.group not in self._prepared:  # a prepared pass was counted by prefill
            counts = self.counts[_kind(batch.group)]
            counts.hits += len(batch.keys) - len(missing)
            counts.misses += len(missing)
        return torch.stack([table[key] for key in batch.keys]).to(self.device)

    # -- the trainer's side --------------------------------------------------------------
    def register_batch(self, image: Optional[torch.Tensor], batch: Dict[str, Any]) -> None:
        """The batch ``image`` (as the trainer will pass it on) came from; None forgets it."""
        keys, groups = batch.get("sample_key"), batch.get("sample_group")
        if image is None or keys is None or groups is None:
            self._batch = None
            return
        group = groups[0]
        if _kind(group) == "train" and group not in self._prepared and group != self._lazy_training_group:
            # A new epoch read without prefill: the previous one's table is not needed again.
            if self._lazy_training_group is not None:
                self.end_pass(self._lazy_training_group)
            self._lazy_training_group = group
        self._batch = RegisteredBatch(image, list(keys), group)

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
        counts = self.counts[_kind(group)]
        counts.hits += len(keys) - missed
        counts.misses += missed
        if missing:
            batch_size = max(self.chunk, loader_batch // self.chunk * self.chunk)
            loader = DataLoader(Subset(wrapper, missing), batch_size=batch_size, num_workers=num_workers)
            for batch in loader:
                self._add(group, batch["sample_key"], self.compute(batch["img"]))
        self._flush(group)
        self._prepared.add(group)

    def end_pass(self, group: str) -> None:
        """After a pass: write what it computed; forget a training epoch's table (the next
        epoch has other augmentations)."""
        self._flush(group)
        self._prepared.discard(group)
        self._batch = None
        if _kind(group) == "train":
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

    def summary(self) -> str:
        """The run's one log line."""
        train, evaluation = self.counts["train"], self.counts["eval"]
        counts = (f"training {train.hits} hits, {train.misses} misses; "
                  f"evaluation {evaluation.hits} hits, {evaluation.misses} misses")
        if self.store is None:
            return f"Image-feature cache disabled (FEATURE_CACHE.ENABLED False; features computed): {counts}"
        return f"Image-feature cache {self.store.root} ({self.compute_id}): {counts}"

    # -- tables --------------------------------------------------------------------------
    def _persists(self, group: str) -> bool:
        return self.store is not None and (self.persist_training or _kind(group) != "train")

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


def _kind(group: str) -> str:
    """``train`` or ``eval``: the second component of a group name."""
    return "train" if group.split("/")[1:2] == ["train"] else "eval"


def attach_feature_server(
    model: nn.Module, cfg, precision: Precision, device: torch.device, backbone: str
) -> Tuple[Optional[ImageFeatureServer], str]:
    """Attach a server to ``model``'s frozen image encoder; return it (or None) and why not.

    A server serves only calls without prompts, so it is safe on any frozen encoder; it
    is not attached when the model says its image features depend on what it learns
    (``image_features_are_fixed`` False), or when it has several image towers.
    """
    if getattr(model, "image_features_are_fixed", None) is False:
        return None, "the image features depend on what the method learns"
    encoders = [m for m in model.modules() if isinstance(m, ImageEncoder)]
    frozen = [e for e in encoders if not any(p.requires_grad for p in e.parameters())]
    if not frozen:
        return None, "no frozen image encoder"
    if len({id(e.visual) for e in frozen}) > 1:
        return None, "the model has several image towers"
    node = cfg.get("FEATURE_CACHE")
    if node is None:
        raise KeyError("cfg.FEATURE_CACHE is not defined: build the config with trainers.config.extend_cfg(cfg)")
    chunk = int(node.CHUNK)
    if chunk < 1:
        raise ValueError(f"FEATURE_CACHE.CHUNK={node.CHUNK}: images per encoder call must be >= 1")
    compute_id, description = compute_identity(backbone, frozen[0], precision, chunk, device)
    store = None
    if node.ENABLED:
        max_bytes = int(float(node.MAX_SIZE_GB) * 2**30) if float(node.MAX_SIZE_GB) > 0 else None
        store = FeatureStore(node.DIR or default_feature_cache_dir(), max_bytes)
        store.describe(compute_id, description)
        store.remove_stale_temporaries()
    server = ImageFeatureServer(
        encoder=frozen[0], precision=precision, device=torch.device(device), chunk=chunk,
        compute_id=compute_id, store=store, persist_training=cfg.SEED >= 0,
    )
    for encoder in frozen:
        encoder.feature_server = server
    return server, ""


__all__ = [
    "CorruptShard",
    "FeatureStore",
    "ImageFeatureServer",
    "ShardInfo",
    "attach_feature_server",
    "compute_identity",
    "decode_shard",
    "default_feature_cache_dir",
    "encode_shard",
    "read_shard_header",
]
