"""``build_transform``: the torchvision pipelines of upstream Dassl (``dassl/data/transforms/transforms.py``), same print lines."""
from __future__ import annotations

from typing import Optional, Sequence

import torch
from torchvision.transforms import (
    CenterCrop,
    ColorJitter,
    Compose,
    GaussianBlur,
    InterpolationMode,
    Normalize,
    RandAugment,
    RandomApply,
    RandomCrop,
    RandomGrayscale,
    RandomHorizontalFlip,
    RandomResizedCrop,
    Resize,
    ToTensor,
)

__all__ = ["build_transform", "AVAI_CHOICES", "INTERPOLATION_MODES"]

AVAI_CHOICES = [
    "random_flip",
    "random_resized_crop",
    "normalize",
    "instance_norm",
    "random_crop",
    "center_crop",
    "colorjitter",
    "randomgrayscale",
    "gaussian_blur",
    "randaugment",
    "gaussian_noise",
]

INTERPOLATION_MODES = {
    "bilinear": InterpolationMode.BILINEAR,
    "bicubic": InterpolationMode.BICUBIC,
    "nearest": InterpolationMode.NEAREST,
}


class InstanceNormalization:
    """Normalise each image by its own per-channel mean and std."""

    def __init__(self, eps: float = 1e-8) -> None:
        self.eps = eps

    def __repr__(self) -> str:  # names the computation (cache keys use it, dassl/data/data_manager.py)
        return f"{type(self).__name__}(eps={self.eps})"

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        c = img.shape[0]
        flat = img.reshape(c, -1)
        mean = flat.mean(1).view(c, 1, 1)
        std = flat.std(1).view(c, 1, 1)
        return (img - mean) / (std + self.eps)


class GaussianNoise:
    """Add N(mean, std) noise with probability ``p``."""

    def __init__(self, mean: float = 0.0, std: float = 0.15, p: float = 0.5) -> None:
        self.mean, self.std, self.p = mean, std, p

    def __repr__(self) -> str:  # names the computation (cache keys use it, dassl/data/data_manager.py)
        return f"{type(self).__name__}(mean={self.mean}, std={self.std}, p={self.p})"

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        if torch.rand(1).item() > self.p:
            return img
        return img + torch.randn(img.size()) * self.std + self.mean


def _check_choices(choices: Sequence[str]) -> None:
    for choice in choices:
        if choice not in AVAI_CHOICES:
            raise ValueError(f'INPUT.TRANSFORMS: unknown transform "{choice}"; choose from {AVAI_CHOICES}')


def build_transform(cfg, is_train: bool = True, choices: Optional[Sequence[str]] = None):
    """The train or test transform of ``cfg.INPUT`` (``None`` if ``INPUT.NO_TRANSFORM``)."""
    if cfg.INPUT.NO_TRANSFORM:
        print("Note: no transform is applied!")
        return None
    if choices is None:
        choices = cfg.INPUT.TRANSFORMS
    _check_choices(choices)
    if cfg.INPUT.INTERPOLATION not in INTERPOLATION_MODES:
        raise ValueError(
            f'INPUT.INTERPOLATION "{cfg.INPUT.INTERPOLATION}" is unknown; choose from {list(INTERPOLATION_MODES)}'
        )
    target_size = f"{cfg.INPUT.SIZE[0]}x{cfg.INPUT.SIZE[1]}"
    normalize = Normalize(mean=cfg.INPUT.PIXEL_MEAN, std=cfg.INPUT.PIXEL_STD)
    if is_train:
        return _build_transform_train(cfg, choices, target_size, normalize)
    return _build_transform_test(cfg, choices, target_size, normalize)


def _build_transform_train(cfg, choices, target_size: str, normalize: Normalize) -> Compose:
    print("Building transform_train")
    interp = INTERPOLATION_MODES[cfg.INPUT.INTERPOLATION]
    input_size = tuple(cfg.INPUT.SIZE)
    tfm = []
    if "random_crop" not in choices and "random_resized_crop" not in choices:
        print(f"+ resize to {target_size}")
        tfm.append(Resize(input_size, interpolation=interp))
    if "random_crop" in choices:
        print(f"+ random crop (padding = {cfg.INPUT.CROP_PADDING})")
        tfm.append(RandomCrop(input_size, padding=cfg.INPUT.CROP_PADDING))
    if "random_resized_crop" in choices:
        scale = tuple(cfg.INPUT.RRCROP_SCALE)
        print(f"+ random resized crop (size={input_size}, scale={scale})")
        tfm.append(RandomResizedCrop(input_size, scale=scale, interpolation=interp))
    if "center_crop" in choices:
        print(f"+ {target_size} center crop")
        tfm.append(CenterCrop(input_size))
    if "random_flip" in choices:
        print("+ random flip")
        tfm.append(RandomHorizontalFlip())
    if "randaugment" in choices:
        n, m = cfg.INPUT.RANDAUGMENT_N, cfg.INPUT.RANDAUGMENT_M
        print(f"+ randaugment (n={n}, m={m})")
        tfm.append(RandAugment(num_ops=n, magnitude=m))
    if "colorjitter" in choices:
        b, c, s, h = (cfg.INPUT.COLORJITTER_B, cfg.INPUT.COLORJITTER_C, cfg.INPUT.COLORJITTER_S, cfg.INPUT.COLORJITTER_H)
        print(f"+ color jitter (brightness={b}, contrast={c}, saturation={s}, hue={h})")
        tfm.append(ColorJitter(brightness=b, contrast=c, saturation=s, hue=h))
    if "randomgrayscale" in choices:
        print(f"+ random gray scale (p={cfg.INPUT.RGS_P})")
        tfm.append(RandomGrayscale(p=cfg.INPUT.RGS_P))
    if "gaussian_blur" in choices:
        gb_k, gb_p = cfg.INPUT.GB_K, cfg.INPUT.GB_P
        print(f"+ gaussian blur (kernel={gb_k}, p={gb_p})")
        tfm.append(RandomApply([GaussianBlur(gb_k)], p=gb_p))
    print("+ to torch tensor of range [0, 1]")
    tfm.append(ToTensor())
    if "normalize" in choices:
        print(f"+ normalization (mean={cfg.INPUT.PIXEL_MEAN}, std={cfg.INPUT.PIXEL_STD})")
        tfm.append(normalize)
    if "gaussian_noise" in choices:
        print(f"+ gaussian noise (mean={cfg.INPUT.GN_MEAN}, std={cfg.INPUT.GN_STD})")
        tfm.append(GaussianNoise(cfg.INPUT.GN_MEAN, cfg.INPUT.GN_STD))
    if "instance_norm" in choices:
        print("+ instance normalization")
        tfm.append(InstanceNormalization())
    return Compose(tfm)


def _build_transform_test(cfg, choices, target_size: str, normalize: Normalize) -> Compose:
    print("Building transform_test")
    interp = INTERPOLATION_MODES[cfg.INPUT.INTERPOLATION]
    input_size = tuple(cfg.INPUT.SIZE)
    print(f"+ resize the smaller edge to {max(input_size)}")
    tfm = [Resize(max(input_size), interpolation=interp)]
    print(f"+ {target_size} center crop")
    tfm.append(CenterCrop(input_size))
    print("+ to torch tensor of range [0, 1]")
    tfm.append(ToTensor())
    if "normalize" in choices:
        print(f"+ normalization (mean={cfg.INPUT.PIXEL_MEAN}, std={cfg.INPUT.PIXEL_STD})")
        tfm.append(normalize)
    if "instance_norm" in choices:
        print("+ instance normalization")
        tfm.append(InstanceNormalization())
    return Compose(tfm)
