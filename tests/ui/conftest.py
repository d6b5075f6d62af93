"""Fixtures for the app tests: style packs with random weights, a clip to play, private settings."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
from PyQt6.QtCore import QSettings

from tests.helpers import make_pack, synthetic_frame

STYLES = ("alpha", "beta", "gamma")


@pytest.fixture(scope="session")
def pack_dir(tmp_path_factory) -> Path:
    """A three-style pack with random weights (made here, never shipped)."""
    return make_pack(tmp_path_factory.mktemp("packs") / "testpack", styles=STYLES, seed=1)


def _write_clip(path: Path, frames: int = 45, size=(320, 240), fps: int = 30) -> Path:
    w, h = size
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=fps)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        for i in range(frames):
            f = np.roll(synthetic_frame(h, w, seed=i), i * 3, axis=1)
            for p in s.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="bgr24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


@pytest.fixture(scope="session")
def clip(tmp_path_factory) -> Path:
    """The bundled demo clip, or a short synthetic one when the checkout has none."""
    try:
        from realtime.demo import DEMO_CLIP

        if Path(DEMO_CLIP).is_file():
            return Path(DEMO_CLIP)
    except ImportError:
        pass
    return _write_clip(tmp_path_factory.mktemp("clip") / "clip.mp4")


@pytest.fixture
def settings_path(tmp_path) -> Path:
    """An INI file in the test's own folder, so tests never read or write the user's settings."""
    return tmp_path / "settings.ini"


def private_settings(path: Path):
    from ui.settings import AppSettings

    return AppSettings(QSettings(str(path), QSettings.Format.IniFormat))
