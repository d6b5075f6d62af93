"""Builders for test data: style packs with random weights (never shipped), synthetic frames."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from realtime.student import build_student
from realtime.styles import save_pack


def make_pack(path: Path, styles=("alpha", "beta"), arch: str = "cin-resnet-xs", width: int = 8,
              seed: int = 0, name: str | None = None, resolution=(160, 120)) -> Path:
    """Write a style pack whose student has random (but visibly non-identity) weights."""
    g = torch.Generator().manual_seed(seed)
    net = build_student(arch, width, len(styles))
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.1)
        net.head.weight.normal_(0, 0.3, generator=g)
    meta = {
        "name": name or path.name,
        "description": "random weights for tests",
        "license": "CC0-1.0",
        "resolution": list(resolution),
        "styles": [{"id": s, "name": s.title(), "metrics": {"fidelity_gain": 0.9},
                    "teacher": {"name": "random", "sha256": "0" * 64, "options": {}}} for s in styles],
    }
    return save_pack(path, net, meta)


def synthetic_frame(h: int = 120, w: int = 160, seed: int = 0) -> np.ndarray:
    """A (h, w, 3) uint8 BGR frame: a bright ellipse 'person' on a textured background."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([(xx * 255 // max(w - 1, 1)), (yy * 255 // max(h - 1, 1)), np.full_like(xx, 90)], -1)
    person = ((xx - w / 2) / (w / 5)) ** 2 + ((yy - h * 0.6) / (h / 2.5)) ** 2 < 1
    img[person] = (60, 170, 230)
    img = img + rng.integers(-8, 9, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)
