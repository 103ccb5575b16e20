"""Rendering: one 64x64 RGB image of an attribute combination of the synthetic world.

:func:`render_object` draws a combination with random nuisances; :func:`render_class_image`
is the ``index``-th image of a class, a pure function of (world version, seed, label, index),
so any single image of the dataset can be re-rendered exactly.
"""
from __future__ import annotations

import math
from typing import Dict, Tuple

import numpy as np

from tools.synthetic.world import COLOURS, PATTERNS, SHAPES, WORLD_VERSION, World

IMAGE_SIZE = 64
_SUPERSAMPLE = 2  # draw at 128 px and average down: anti-aliased edges
# Radius (in 64-px units) of the object's circumscribed circle per size value.
SIZE_RADIUS: Dict[str, Tuple[float, float]] = {"small": (8.5, 12.0), "large": (18.0, 24.0)}

_GRID_CACHE: Dict[int, Tuple[np.ndarray, np.ndarray]] = {}


def _grid(n: int) -> Tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates of an n x n canvas in 64-px units."""
    if n not in _GRID_CACHE:
        coords = (np.arange(n, dtype=np.float32) + 0.5) * (IMAGE_SIZE / n)
        _GRID_CACHE[n] = np.meshgrid(coords, coords)  # (x, y)
    return _GRID_CACHE[n]


def _polygon_mask(u: np.ndarray, v: np.ndarray, sides: int, inradius: float, phase: float) -> np.ndarray:
    mask = np.ones(u.shape, dtype=bool)
    for i in range(sides):
        a = phase + 2 * math.pi * i / sides
        mask &= u * math.cos(a) + v * math.sin(a) <= inradius
    return mask


def _shape_mask(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Mask of a unit-circumradius shape in object coordinates (u, v)."""
    if shape == "circle":
        return u * u + v * v <= 0.85
    if shape == "square":
        return np.maximum(np.abs(u), np.abs(v)) <= 0.72
    if shape == "triangle":
        return _polygon_mask(u, v, 3, 0.55, math.pi / 2)
    if shape == "hexagon":
        return _polygon_mask(u, v, 6, 0.85, 0.0)
    if shape == "star":
        r = np.sqrt(u * u + v * v)
        phi = np.arctan2(v, u)
        # Triangle wave over the five arms: 1 at a tip, 0 between two tips.
        t = np.abs(((phi * 5 / (2 * math.pi)) % 1.0) * 2 - 1)
        return r <= 0.42 + 0.58 * (1 - t) ** 1.6
    raise ValueError(f"unknown shape {shape!r}; expected one of {SHAPES}")


def _segment_distance(x, y, x0, y0, x1, y1) -> np.ndarray:
    dx, dy = x1 - x0, y1 - y0
    t = np.clip(((x - x0) * dx + (y - y0) * dy) / max(dx * dx + dy * dy, 1e-6), 0.0, 1.0)
    return np.hypot(x - (x0 + t * dx), y - (y0 + t * dy))


def render_object(
    shape: str, colour: str, pattern: str, size: str, rng: np.random.Generator
) -> np.ndarray:
    """One 64x64x3 uint8 image of the combination, with random nuisances from ``rng``.

    Nuisances: position, rotation, scale within the size value, background tint and
    gradient, grey clutter (lines and blobs), colour jitter and pixel noise. Clutter is
    desaturated so that it never carries a colour attribute.
    """
    n = IMAGE_SIZE * _SUPERSAMPLE
    x, y = _grid(n)
    # Background: a desaturated tint with a linear gradient.
    grey = rng.uniform(70, 200)
    tint = rng.uniform(-12, 12, size=3)
    gdir = rng.uniform(0, 2 * math.pi)
    grad = ((x - 32) * math.cos(gdir) + (y - 32) * math.sin(gdir)) * rng.uniform(0, 1.2)
    img = np.empty((n, n, 3), dtype=np.float32)
    for ch in range(3):
        img[..., ch] = grey + tint[ch] + grad
    # Clutter, drawn before the object so the object occludes it.
    for _ in range(rng.integers(2, 6)):
        level = rng.uniform(30, 230)
        if rng.random() < 0.5:
            x0, y0, x1, y1 = rng.uniform(0, 64, size=4)
            m = _segment_distance(x, y, x0, y0, x1, y1) <= rng.uniform(0.4, 1.2)
        else:
            cx, cy = rng.uniform(0, 64, size=2)
            m = (x - cx) ** 2 + (y - cy) ** 2 <= rng.uniform(1.0, 3.5) ** 2
        img[m] = level
    # The object.
    lo, hi = SIZE_RADIUS[size]
    radius = rng.uniform(lo, hi)
    margin = radius + 1.5
    cx, cy = rng.uniform(margin, 64 - margin, size=2)
    theta = rng.uniform(0, 2 * math.pi)
    ct, st = math.cos(theta), math.sin(theta)
    du, dv = x - cx, y - cy
    u = (du * ct + dv * st) / radius
    v = (-du * st + dv * ct) / radius
    body = _shape_mask(shape, u, v)
    rgb = np.asarray(COLOURS[colour], dtype=np.float32)
    rgb = rgb * rng.uniform(0.8, 1.12) + rng.uniform(-14, 14, size=3)
    img[body] = rgb
    if pattern != "plain":
        # Pattern in absolute pixels (object frame, so it rotates with the object).
        pu, pv = u * radius, v * radius
        if pattern == "striped":
            period = rng.uniform(5.5, 7.0)
            marks = ((pu / period) % 1.0) < 0.5
        elif pattern == "dotted":
            period = rng.uniform(6.0, 7.5)
            fu = (pu / period) % 1.0 - 0.5
            fv = (pv / period) % 1.0 - 0.5
            marks = fu * fu + fv * fv <= (1.7 / period) ** 2
        else:
            raise ValueError(f"unknown pattern {pattern!r}; expected one of {PATTERNS}")
        img[body & marks] = rgb * rng.uniform(0.3, 0.45)
    img = img.reshape(IMAGE_SIZE, _SUPERSAMPLE, IMAGE_SIZE, _SUPERSAMPLE, 3).mean(axis=(1, 3))
    img += rng.normal(0.0, rng.uniform(2.0, 8.0), size=img.shape)
    return np.clip(img + 0.5, 0, 255).astype(np.uint8)


def render_class_image(world: World, label: int, index: int) -> np.ndarray:
    """The ``index``-th image of class ``label``: a pure function of (version, seed, label, index)."""
    c = world.classes[label]
    rng = np.random.default_rng([WORLD_VERSION, world.seed, 1, label, index])
    return render_object(c.shape, c.colour, c.pattern, c.size, rng)

