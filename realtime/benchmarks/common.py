"""What the benchmarks share: frames decoded once into memory, percentiles, and JSON output."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from realtime.errors import InputError
from realtime.sizes import parse_size
from realtime.sources import open_source


def load_frames(source: str, size: tuple[int, int], n: int) -> tuple[list[np.ndarray], float]:
    """Decode up to ``n`` frames of ``source`` (looping) at ``size``; also return the source's frame rate.

    Raises:
        RuntimeError: No frame could be read.
    """
    src = open_source(source, size=size, mode="all", loop=True, paced=False, max_frames=n)
    try:
        frames = [f.image for f in src.frames()]
        fps = src.fps or 30.0
    finally:
        src.close()
    if not frames:
        raise RuntimeError(f"--source {source}: no frames could be read")
    return frames, fps


def synthetic_frames(size: tuple[int, int], n: int) -> list[np.ndarray]:
    """``n`` uint8 BGR frames of a moving scene at ``size`` (W, H), the same on every run."""
    w, h = size
    rng = np.random.default_rng(0)
    # Textured background (blurred noise) panned a few pixels a frame, plus a moving disc: motion and detail
    # like a webcam scene, so an encoder does real work.
    bg = cv2.GaussianBlur(rng.integers(0, 256, (h + 64, w + 256, 3), dtype=np.uint8), (0, 0), 3)
    frames = []
    for i in range(n):
        x = (2 * i) % 256
        img = np.ascontiguousarray(bg[32 : 32 + h, x : x + w])
        cv2.circle(img, (int(w / 2 + w / 4 * np.sin(i / 15)), h // 2), h // 5, (40, 170, 230), -1)
        frames.append(img)
    return frames


def bench_frames(source: str | None, size: tuple[int, int], n: int) -> list[np.ndarray]:
    """``n`` frames at ``size``: decoded from ``source`` (looping), or :func:`synthetic_frames` when it is None."""
    return load_frames(source, size, n)[0] if source is not None else synthetic_frames(size, n)


def percentile(xs: list[float], q: float) -> float | None:
    """The ``q``-th percentile of ``xs`` rounded to 3 decimals, ``None`` for no samples."""
    return round(float(np.percentile(xs, q)), 3) if xs else None


def emit_json(result: dict[str, Any], path: str | Path | None) -> None:
    """Print ``result`` as indented JSON and, when ``path`` is given, also write it there."""
    text = json.dumps(result, indent=2)
    print(text)
    if path:
        Path(path).write_text(text + "\n")


def size_arg(text: str) -> tuple[int, int]:
    """``argparse`` type for a ``WxH`` size: ``(w, h)``, or a usage error naming what was expected."""
    try:
        return parse_size(text)
    except InputError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
