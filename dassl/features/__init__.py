"""Features computed from a batch's items alone, stored and served by item key.

| module | what |
|---|---|
| ``store`` | ``FeatureStore``: the shards on disk (atomic, checksummed, size-limited), generic |
| ``serving`` | ``ImageFeatureServer``: canonical computation, serving an ``ImageBatch`` by its keys, per-pass hits and misses (``stats()``) |

The items' identity comes with the batch (``dassl/data/batch.py``). What identifies a
*computation* (which encoder, weights, precision, device) is the caller's: for CLIP,
``trainers/common/cache_identity.py``; a trainer attaches a server with
``trainers/common/feature_cache.py``. docs/feature-cache.md describes the whole.
"""
from .serving import ImageFeatureServer, PassCounts
from .store import CorruptShard, FeatureStore, ShardInfo, decode_shard, encode_shard, read_shard_header

__all__ = [
    "CorruptShard",
    "FeatureStore",
    "ImageFeatureServer",
    "PassCounts",
    "ShardInfo",
    "decode_shard",
    "encode_shard",
    "read_shard_header",
]
