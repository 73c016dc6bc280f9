"""A seeded, COIL-like "turntable" image set for tests and the smoke preset.

Each object is a coloured, textured shape on black; its poses are the shape
rotated about the image centre with a small change of scale and lighting, as an
object on COIL's turntable is seen from angles 360/P degrees apart.
"""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from .base import ImageDataset

__all__ = ["make_synthetic", "make_multiview_features"]


def _shape_mask(rng: np.random.Generator, size: int) -> Image.Image:
    kind = rng.integers(0, 3)
    mask = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(mask)
    c, r = size / 2, size * rng.uniform(0.25, 0.38)
    if kind == 0:  # ellipse
        ar = rng.uniform(0.5, 0.9)
        draw.ellipse([c - r, c - r * ar, c + r, c + r * ar], fill=255)
    else:  # polygon (kind 1) or star (kind 2)
        n = int(rng.integers(3, 8))
        pts = []
        for k in range(n * (2 if kind == 2 else 1)):
            ang = 2 * np.pi * k / (n * (2 if kind == 2 else 1)) + rng.uniform(-0.2, 0.2)
            rad = r * (0.45 if (kind == 2 and k % 2) else 1.0)
            pts.append((c + rad * np.cos(ang), c + rad * np.sin(ang)))
        draw.polygon(pts, fill=255)
    return mask


def _texture(rng: np.random.Generator, size: int) -> np.ndarray:
    a, b = rng.uniform(40, 255, 3), rng.uniform(40, 255, 3)
    yy, xx = np.mgrid[0:size, 0:size] / size
    freq, theta = rng.uniform(2, 8), rng.uniform(0, np.pi)
    kind = rng.integers(0, 3)
    if kind == 0:
        t = (np.sin(2 * np.pi * freq * (xx * np.cos(theta) + yy * np.sin(theta))) > 0).astype(float)
    elif kind == 1:
        t = ((np.floor(xx * freq) + np.floor(yy * freq)) % 2).astype(float)
    else:
        t = 0.5 + 0.5 * np.sin(2 * np.pi * freq * np.hypot(xx - 0.5, yy - 0.5))
    return a * t[..., None] + b * (1 - t[..., None])


def make_synthetic(n_objects: int = 10, n_poses: int = 12, size: int = 64, seed: int = 0,
                   name: str = "synthetic") -> ImageDataset:
    """Generate ``n_objects x n_poses`` RGB images of ``size x size`` pixels.

    Classes are contiguous runs (object 0's poses first), as in COIL-100.
    """
    if n_objects < 1 or n_poses < 1 or size < 16:
        raise ValueError("make_synthetic needs n_objects >= 1, n_poses >= 1 and size >= 16")
    rng = np.random.default_rng(seed)
    arrays, labels = [], []
    for obj in range(n_objects):
        mask = _shape_mask(rng, size)
        tex = Image.fromarray(_texture(rng, size).clip(0, 255).astype(np.uint8))
        for p in range(n_poses):
            angle = 360.0 * p / n_poses
            scale = 1.0 + 0.08 * np.sin(np.deg2rad(angle))
            m = mask.rotate(angle, resample=Image.BILINEAR)
            t = tex.rotate(angle, resample=Image.BILINEAR)
            if abs(scale - 1) > 1e-3:
                s = max(8, int(round(size * scale)))
                m, t = m.resize((s, s), Image.BILINEAR), t.resize((s, s), Image.BILINEAR)
                off = (s - size) // 2
                if off >= 0:
                    m, t = m.crop((off, off, off + size, off + size)), t.crop((off, off, off + size, off + size))
                else:
                    pad_m, pad_t = Image.new("L", (size, size)), Image.new("RGB", (size, size))
                    pad_m.paste(m, (-off, -off)), pad_t.paste(t, (-off, -off))
                    m, t = pad_m, pad_t
            light = 0.85 + 0.15 * np.cos(np.deg2rad(angle))
            img = np.asarray(t, dtype=float) * (np.asarray(m, dtype=float)[..., None] / 255.0) * light
            img += rng.normal(0, 3, img.shape)
            arrays.append(img.clip(0, 255).astype(np.uint8))
            labels.append(obj)
    return ImageDataset(name=name, labels=np.array(labels), arrays=arrays,
                        class_names=[f"object{o}" for o in range(n_objects)],
                        info={"layout": "synthetic", "n_objects": n_objects, "n_poses": n_poses,
                              "size": size, "seed": seed})


def make_multiview_features(n_per_class: int = 40, n_classes: int = 6, dim: int = 16, noise: float = 0.35,
                            seed: int = 0):
    """Three feature views of one labelled set, with complementary structure.

    Class ``c`` is the pair ``(c // 2, c % 3)`` (unique for ``n_classes = 6``). View 0
    places samples by the first attribute only (classes 0 and 1 coincide, 2 and 3, ...),
    view 1 by the second only; each view alone therefore merges pairs of classes, and only
    both together separate all of them. View 2 is pure noise. Each attribute value is a
    point on a curved 1-D manifold embedded in ``dim`` dimensions, with Gaussian noise.

    Returns
    -------
    views : list of three float32 arrays (n, dim), labels : int array (n,)
    """
    if n_classes != 6:
        raise ValueError("make_multiview_features builds its complementary structure for n_classes=6")
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(n_classes), n_per_class)
    n = len(labels)

    def view(attr: np.ndarray, n_values: int) -> np.ndarray:
        basis = np.linalg.qr(rng.normal(size=(dim, 2)))[0]  # a random plane in R^dim
        angles = 2 * np.pi * np.arange(n_values) / n_values
        centres = np.stack([np.cos(angles), np.sin(angles)], 1) * 2.0
        t = rng.uniform(-0.6, 0.6, n)  # position along an arc around each centre
        arc = np.stack([np.cos(t * 3), np.sin(t * 3)], 1) * 0.8
        pts = (centres[attr] + arc) @ basis.T
        return (pts + noise * rng.normal(size=(n, dim)) / np.sqrt(dim) * 2).astype(np.float32)

    v0 = view(labels // 2, 3)
    v1 = view(labels % 3, 3)
    v2 = rng.normal(size=(n, dim)).astype(np.float32)
    return [v0, v1, v2], labels
