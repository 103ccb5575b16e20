"""What a batch's items are: ``ImageBatch``, the images of a batch with their identities.

A loader built by ``build_data_loader`` makes batches as upstream Dassl does (a dict of
collated fields: ``img``, ``label``, ``domain``, ``impath``, ``index``) plus, when the
wrapper's items are determined by their file, the transform and their augmentation seed
alone (``DatasetWrapper.describes_samples``), the items' identity:

* ``sample_key``: one digest per item of what its image tensor is made from;
* ``sample_group``: the group the keys belong to (``<dataset>/eval``,
  ``<dataset>/train/seed<S>/epoch<E>``), the same for every item of a batch.

``ImageBatch.from_batch(batch)`` packs the images and that identity into one value, which
trainers pass on to the model unchanged: whatever consumes the images (the feature server
of a frozen image encoder, ``dassl/features/serving.py``) reads their identity from the
value itself. In a pass that reads no image (``DatasetWrapper.pixels_needed`` False: a
consumer already holds what it computes from the pixels), the batch's ``img`` field *is*
such an ``ImageBatch``, naming the items and holding no pixels; asking it for pixels is an
error that says why there are none.
"""
from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Sequence

import torch
from torch.utils.data import default_collate

__all__ = ["ITEM_GROUP", "ITEM_KEY", "ImageBatch", "PixelsNotRead", "collate_items"]

#: Batch fields that identify the items (present when the wrapper describes its items).
ITEM_KEY = "sample_key"
ITEM_GROUP = "sample_group"


class PixelsNotRead(RuntimeError):
    """The pixels of an ``ImageBatch`` whose pass did not read the images were asked for."""


class ImageBatch:
    """The images of a batch and what identifies its items.

    ``pixels``: the ``(B, C, H, W)`` tensor, or None when the pass read no image.
    ``keys``: one key per item (``sample_key``), or None when the items are not described.
    ``group``: the keys' group (``sample_group``), None with them.

    Immutable: ``to`` returns a new batch; the keys always describe the pixels they came with.
    """

    __slots__ = ("_pixels", "keys", "group", "_size")

    def __init__(
        self,
        pixels: Optional[torch.Tensor] = None,
        keys: Optional[Sequence[str]] = None,
        group: Optional[str] = None,
    ) -> None:
        if pixels is None and keys is None:
            raise ValueError("An ImageBatch needs its pixels, its item keys, or both")
        if (keys is None) != (group is None):
            raise ValueError("An ImageBatch's item keys and their group come together")
        if keys is not None and pixels is not None and len(keys) != pixels.shape[0]:
            raise ValueError(f"{len(keys)} item keys for {pixels.shape[0]} images")
        object.__setattr__(self, "_pixels", pixels)
        object.__setattr__(self, "keys", None if keys is None else tuple(keys))
        object.__setattr__(self, "group", group)
        object.__setattr__(self, "_size", len(keys) if keys is not None else int(pixels.shape[0]))

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("An ImageBatch is immutable: make a new one")

    def __reduce__(self):  # loader workers send batches to the main process
        return ImageBatch, (self._pixels, self.keys, self.group)

    @classmethod
    def from_batch(cls, batch: Mapping[str, Any]) -> "ImageBatch":
        """The images of a loader's batch with their identity (when the batch has one)."""
        images = batch["img"]
        if isinstance(images, ImageBatch):
            return images
        keys, groups = batch.get(ITEM_KEY), batch.get(ITEM_GROUP)
        if keys is None or groups is None:
            return cls(images)
        return cls(images, keys, _single_group(groups))

    @property
    def identified(self) -> bool:
        """Whether the items carry keys (a consumer may then serve results by key)."""
        return self.keys is not None

    @property
    def has_pixels(self) -> bool:
        return self._pixels is not None

    @property
    def pixels(self) -> torch.Tensor:
        """The image tensor; an error when the pass read no image."""
        if self._pixels is None:
            raise PixelsNotRead(
                f"The images of this batch ({self._size} items of {self.group}) were not read: the "
                "image-feature cache serves their features, so hand the batch's images, as the trainer "
                "received them, to model.encode_image (or to the image encoder without prompts). To "
                "compute from the pixels instead, set FEATURE_CACHE.ENABLED False."
            )
        return self._pixels

    def to(self, *args: Any, **kwargs: Any) -> "ImageBatch":
        """The same items with the pixels moved (``Tensor.to`` arguments)."""
        pixels = None if self._pixels is None else self._pixels.to(*args, **kwargs)
        return ImageBatch(pixels, self.keys, self.group)

    def __len__(self) -> int:
        return self._size

    def __repr__(self) -> str:
        pixels = "not read" if self._pixels is None else tuple(self._pixels.shape)
        return f"ImageBatch({self._size} items, group={self.group!r}, pixels={pixels})"


def _single_group(groups: Any) -> str:
    groups = [groups] if isinstance(groups, str) else list(groups)
    if not groups or any(g != groups[0] for g in groups):
        raise ValueError(f"The items of one batch belong to one group, got {sorted(set(groups))}")
    return groups[0]


def collate_items(items: List[Dict[str, Any]]) -> Dict[str, Any]:
    """``default_collate``, and in a pass that read no image, ``img`` = the items' ``ImageBatch``."""
    batch = default_collate(items)
    if "img" not in batch and ITEM_KEY in batch:
        batch["img"] = ImageBatch(None, batch[ITEM_KEY], _single_group(batch[ITEM_GROUP]))
    return batch
