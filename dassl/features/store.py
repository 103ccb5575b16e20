"""The on-disk store of computed features: tensors keyed by item keys, under an identity.

Generic: it knows nothing of what computed the features. A *computation id* names the
computation (for image features, the backbone, precision, chunk size and device:
``trainers/common/cache_identity.py``), a *group* names items that belong together
(``<dataset>/eval``, ``<dataset>/train/seed<S>/epoch<E>``, ``DatasetWrapper.sample_group``)
and each row is keyed by a 128-bit item key (``DatasetWrapper.sample_key``).

Layout: ``<root>/v1/<compute id>/<dataset>/<group>/*.feat`` (docs/feature-cache.md, "On
disk"). Shards are written atomically (temporary file + rename) under names no other writer
uses, so runs may fill the same group at once; each shard carries its length and a SHA-256
of its contents, and a shard that fails the check is deleted (its rows are then computed
again), never used; least-recently-used shards are evicted beyond ``max_bytes``. The
runtime side (computing, serving batches, counting hits) is ``dassl/features/serving.py``.
"""
from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import struct
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Set, Tuple

import torch

LAYOUT_VERSION = "v1"
SHARD_SUFFIX = ".feat"
TEMP_PREFIX = ".tmp-"
SHARD_MAGIC = b"SEMPT-FEATURES\n"
KEY_BYTES = 16  # item keys are 128-bit digests (DatasetWrapper.sample_key)
STALE_TEMP_SECONDS = 24 * 3600  # a temporary file this old belongs to a writer that died
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


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


__all__ = [
    "CorruptShard",
    "FeatureStore",
    "ShardInfo",
    "decode_shard",
    "encode_shard",
    "read_shard_header",
]
