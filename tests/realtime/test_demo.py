"""The shipped demo clip and its builder."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from realtime.demo import DEMO_CLIP, DEMO_FPS, DEMO_FRAMES, DEMO_SIZE, build_demo, main, render_frames
from realtime.errors import InputError


def decode(path: Path) -> tuple[list[np.ndarray], float]:
    """All frames of a video as BGR arrays, and its frame rate."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        rate = float(stream.average_rate)
        frames = [f.to_ndarray(format="bgr24") for f in container.decode(stream)]
    return frames, rate


def test_shipped_clip_decodes_as_stated() -> None:
    assert DEMO_CLIP.is_file(), f"{DEMO_CLIP} is missing; build it with python -m realtime.demo"
    assert DEMO_CLIP.stat().st_size < 3_000_000
    with av.open(str(DEMO_CLIP)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert stream.codec_context.pix_fmt == "yuv420p"
    frames, rate = decode(DEMO_CLIP)
    assert rate == DEMO_FPS == 30
    assert len(frames) == DEMO_FRAMES == 210
    assert all(f.shape == (DEMO_SIZE[1], DEMO_SIZE[0], 3) for f in frames)
    # It moves: neither a still image nor a jumble.
    steps = [np.abs(b.astype(np.int16) - a).mean() for a, b in zip(frames[::15], frames[15::15])]
    assert min(steps) > 1.0 and max(steps) < 40.0


def test_shipped_clip_has_the_person_where_the_segmenter_finds_it() -> None:
    from realtime.segmentation import Segmenter

    with av.open(str(DEMO_CLIP)) as container:
        for i, f in enumerate(container.decode(video=0)):
            if i == DEMO_FRAMES // 2:
                frame = f.to_ndarray(format="bgr24")
                break
    with Segmenter("landscape", smoothing=0.0) as seg:
        mask = seg.segment(frame)
    h, w = mask.shape
    assert mask[int(0.3 * h) : int(0.45 * h), int(0.6 * w) : int(0.72 * w)].mean() > 0.9  # face
    assert mask[: int(0.1 * h), : int(0.4 * w)].mean() < 0.05  # sky over the launch pad


def test_render_is_deterministic_noisy_and_moving() -> None:
    a = list(render_frames(seconds=0.2, seed=3))
    b = list(render_frames(seconds=0.2, seed=3))
    c = list(render_frames(seconds=0.2, seed=4))
    assert len(a) == 6
    assert all(f.dtype == np.uint8 and f.shape == (480, 640, 3) for f in a)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert np.abs(a[0].astype(np.int16) - c[0]).mean() > 1.0
    # Per-frame sensor noise: a flat patch of sky differs between consecutive frames pixel by pixel.
    sky = [f[10:40, 20:120].astype(np.float32) for f in a]
    assert np.std(sky[1] - sky[0]) > 2.0


def test_builder_is_deterministic(tmp_path: Path) -> None:
    one = build_demo(tmp_path / "one.mp4", seconds=0.5, seed=1)
    two = build_demo(tmp_path / "two.mp4", seconds=0.5, seed=1)
    assert one.frames == two.frames == 15
    assert one.path.read_bytes() == two.path.read_bytes()
    frames, rate = decode(one.path)
    assert rate == 30 and len(frames) == 15 and frames[0].shape == (480, 640, 3)


def test_cli_builds_and_reports_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "sub" / "clip.mp4"
    assert main(["--out", str(out), "--seconds", "0.1"]) == 0
    assert len(decode(out)[0]) == 3
    assert main(["--out", str(tmp_path / "clip.avi"), "--seconds", "0.1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("stylecam: error:") and "clip.avi" in err and "\n" not in err
    with pytest.raises(InputError, match="seconds"):
        list(render_frames(seconds=0.0))
    with pytest.raises(InputError, match="crf"):
        build_demo(tmp_path / "x.mp4", seconds=0.1, crf=60)
