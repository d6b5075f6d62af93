"""Frame sources on synthetic clips and fake cameras: order, loop, drops, pacing, errors, reconnect."""

from __future__ import annotations

import threading
import time
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

import realtime.sources as sources
from realtime.errors import DeviceError, InputError
from realtime.sources import Frame, FrameSource, list_cameras, open_source

W, H = 160, 120
BITS = 8


def pattern(i: int, w: int = W, h: int = H) -> np.ndarray:
    """A frame whose top half encodes ``i`` in 8 black/white blocks (survives lossy coding and resizing)."""
    img = np.full((h, w, 3), 96, np.uint8)
    bw = w // BITS
    for b in range(BITS):
        if (i >> b) & 1:
            img[: h // 2, b * bw : (b + 1) * bw] = 255
        else:
            img[: h // 2, b * bw : (b + 1) * bw] = 0
    img[h // 2 :, :, 2] = 200  # some colour so BGR order is checkable
    return img


def decode_pattern(img: np.ndarray) -> int:
    h, w = img.shape[:2]
    bw = w // BITS
    top = img[: h // 2].mean(axis=2)
    # Sample the middle of each block, away from edges blurred by coding and resizing.
    cells = [top[h // 8 : h // 2 - h // 8, b * bw + bw // 4 : (b + 1) * bw - bw // 4] for b in range(BITS)]
    return sum(1 << b for b, cell in enumerate(cells) if cell.mean() > 128)


def make_clip(path: Path, n: int, fps: int = 30, w: int = W, h: int = H, pts_ms: list[int] | None = None) -> Path:
    """Write ``n`` pattern frames at ``fps``, or at the millisecond timestamps ``pts_ms`` (variable rate)."""
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=fps)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        s.codec_context.options = {"preset": "ultrafast", "crf": "10", "bf": "0"}
        if pts_ms is not None:
            s.time_base = s.codec_context.time_base = Fraction(1, 1000)
        for i in range(n):
            f = av.VideoFrame.from_ndarray(pattern(i, w, h), format="bgr24")
            f.pts = i if pts_ms is None else pts_ms[i]
            f.time_base = Fraction(1, fps) if pts_ms is None else Fraction(1, 1000)
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


@pytest.fixture(scope="module")
def clip20(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_clip(tmp_path_factory.mktemp("clips") / "c20.mkv", 20)


@pytest.fixture(scope="module")
def clip5(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_clip(tmp_path_factory.mktemp("clips") / "c5.mp4", 5, fps=25)


def drain(src: FrameSource, timeout: float = 10.0) -> list[Frame]:
    out = []
    while (f := src.read(timeout)) is not None:
        out.append(f)
    assert src.eof, "read returned None before the end of the stream (timeout)"
    return out


# ---------------------------------------------------------------------------- files
def test_file_all_mode_reads_every_frame_in_order(clip20: Path) -> None:
    with open_source(clip20, mode="all") as src:
        assert (src.kind, src.width, src.height) == ("file", W, H)
        assert src.fps == pytest.approx(30, rel=0.01)
        assert src.info["frame_count"] == 20
        frames = drain(src)
        assert src.read(0.1) is None and src.eof
        assert src.dropped == 0
    assert [f.index for f in frames] == list(range(20))
    assert [decode_pattern(f.image) for f in frames] == list(range(20))
    assert [f.t_media for f in frames] == pytest.approx([i / 30 for i in range(20)], abs=1e-3)
    t = [f.t_capture for f in frames]
    assert all(b > a for a, b in zip(t, t[1:])), "capture times must increase"
    for f in frames:
        assert f.image.dtype == np.uint8 and f.image.shape == (H, W, 3) and f.image.flags.c_contiguous
        assert f.image[-1, 0, 2] > 170 and f.image[-1, 0, 0] < 130  # (96, 96, 200): red is last in BGR
    assert src.state == "ended"


def test_variable_frame_rate_file_keeps_its_timestamps(tmp_path: Path) -> None:
    pts = [0, 40, 50, 120, 300, 310]
    clip = make_clip(tmp_path / "vfr.mkv", len(pts), pts_ms=pts)
    with open_source(clip, mode="all") as src:
        frames = drain(src)
    assert [decode_pattern(f.image) for f in frames] == list(range(len(pts)))
    assert [f.t_media for f in frames] == pytest.approx([p / 1000 for p in pts], abs=1e-3)
    # An explicit rate retimes the file: frame i at i / fps.
    with open_source(clip, mode="all", fps=10) as src:
        frames = drain(src)
    assert [f.t_media for f in frames] == pytest.approx([i / 10 for i in range(len(pts))])


def test_frames_iterator_and_max_frames(clip20: Path) -> None:
    with open_source(clip20, mode="all", max_frames=7) as src:
        frames = list(src.frames())
    assert [decode_pattern(f.image) for f in frames] == list(range(7))


def test_file_resize_cover_and_stretch(clip20: Path) -> None:
    with open_source(clip20, size=(64, 64), mode="all", max_frames=1) as src:
        assert (src.width, src.height) == (64, 64)
        f = src.read(5)
        assert f is not None and f.image.shape == (64, 64, 3) and f.image.flags.c_contiguous
        # cover keeps the aspect ratio: the 4:3 frame is cropped at the sides, so the central rows are the
        # top pattern and the red bottom half, undistorted in height.
        assert f.image[-1, 32, 2] > 150
    with open_source(clip20, size=(80, 30), fit="stretch", mode="all", max_frames=2) as src:
        frames = drain(src)
    assert all(f.image.shape == (30, 80, 3) for f in frames)
    assert [decode_pattern(f.image) for f in frames] == [0, 1]


def test_file_loop_restarts_and_keeps_counting(clip5: Path) -> None:
    with open_source(clip5, loop=True, mode="all", max_frames=12) as src:
        frames = drain(src)
    assert [decode_pattern(f.image) for f in frames] == [0, 1, 2, 3, 4] * 2 + [0, 1]
    assert [f.index for f in frames] == list(range(12))
    assert frames[5].t_media == 0.0 and frames[6].t_media == pytest.approx(1 / 25)


def test_paced_file_is_delivered_at_its_rate(clip5: Path) -> None:
    t0 = time.perf_counter()
    with open_source(clip5, fps=40, mode="all", paced=True) as src:
        frames = drain(src)
    elapsed = time.perf_counter() - t0
    assert len(frames) == 5
    # Five frames at 40 fps: the last is due 4/40 s after the first.
    assert frames[-1].t_capture - frames[0].t_capture >= 4 / 40 - 0.01
    assert elapsed >= 4 / 40 - 0.01


def test_latest_slot_drops_frames_for_slow_consumer(clip20: Path) -> None:
    with open_source(clip20, fps=200, paced=True) as src:  # 5 ms a frame, consumer takes 30 ms
        seen = []
        while (f := src.read(5)) is not None:
            seen.append(f)
            time.sleep(0.03)
        assert src.eof
        dropped, captured = src.dropped, src.captured
    idx = [f.index for f in seen]
    assert idx == sorted(set(idx)), "frames must arrive newest-first, never repeated or reordered"
    assert captured == 20
    assert dropped > 0
    assert dropped + len(seen) == captured, "every frame is either read or counted as dropped"
    assert idx[-1] == 19, "the last frame is delivered at end of stream"
    # Frame content matches the index: the slot holds real frames, not stale ones.
    assert [decode_pattern(f.image) for f in seen] == idx


def test_close_unblocks_capture_thread_waiting_on_full_queue(clip20: Path) -> None:
    src = open_source(clip20, mode="all")
    time.sleep(0.1)  # the queue fills and the capture thread waits for room
    t0 = time.perf_counter()
    src.close()
    assert time.perf_counter() - t0 < 1.0
    assert not src._thread.is_alive()
    assert src.read(0.1) is None and src.eof
    src.close()  # twice is fine


# ---------------------------------------------------------------------------- images
def test_still_image_repeats(tmp_path: Path) -> None:
    path = tmp_path / "still.png"
    cv2.imwrite(str(path), pattern(5))
    with open_source(path, fps=200) as src:
        assert src.kind == "image" and (src.width, src.height) == (W, H)
        frames = [src.read(2) for _ in range(4)]
    assert all(f is not None for f in frames)
    assert [decode_pattern(f.image) for f in frames] == [5] * 4
    idx = [f.index for f in frames]
    assert idx == sorted(set(idx))
    # Every frame is its own array: a consumer drawing on one must not change the next.
    frames[0].image[:] = 0
    assert frames[1].image.max() == 255


def test_still_image_once_without_loop(tmp_path: Path) -> None:
    path = tmp_path / "still.jpg"
    cv2.imwrite(str(path), pattern(9))
    with open_source(path, loop=False, mode="all", size=(80, 60)) as src:
        frames = drain(src)
    assert len(frames) == 1 and frames[0].image.shape == (60, 80, 3)
    assert decode_pattern(frames[0].image) == 9


def test_gray_16bit_image_becomes_bgr8(tmp_path: Path) -> None:
    path = tmp_path / "deep.png"
    cv2.imwrite(str(path), np.full((10, 12), 40000, np.uint16))
    with open_source(path, loop=False, mode="all") as src:
        f = src.read(5)
    assert f is not None and f.image.dtype == np.uint8 and f.image.shape == (10, 12, 3)


# ---------------------------------------------------------------------------- bad input
def test_missing_file_names_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "clip.mp4"
    with pytest.raises(InputError, match="no such file") as e:
        open_source(missing)
    assert str(missing) in str(e.value)


@pytest.mark.parametrize("name", ["notes.mp4", "broken.png", "empty.mkv"])
def test_not_a_video_or_image(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(b"" if name.startswith("empty") else b"this is text, not media\n" * 20)
    with pytest.raises(InputError, match="is not a video or image OpenCV can read") as e:
        open_source(path)
    assert str(path) in str(e.value)


def test_directory_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="directory"):
        open_source(tmp_path)


@pytest.mark.parametrize("kwargs", [{"mode": "sometimes"}, {"fit": "squash"}, {"size": (0, 10)}, {"fps": -1}])
def test_bad_arguments(clip5: Path, kwargs: dict) -> None:
    with pytest.raises(InputError):
        open_source(clip5, **kwargs)


def test_bad_camera_index_lists_existing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sources, "list_cameras", lambda *a, **k: [0, 2])
    with pytest.raises(DeviceError, match=r"camera 57 not found; cameras that open: 0, 2"):
        open_source(57)
    monkeypatch.setattr(sources, "list_cameras", lambda *a, **k: [])
    with pytest.raises(DeviceError, match="camera 57 not found; no cameras were found"):
        open_source("/dev/video57")
    with pytest.raises(InputError):
        open_source(-1)


def test_list_cameras_is_fast_and_skips_nodes_that_do_not_open(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sources.glob, "glob", lambda pattern: [])
    t0 = time.perf_counter()
    assert list_cameras() == []
    # A node that exists in the listing but is no capture device (here: does not exist at all) is left out.
    monkeypatch.setattr(sources.glob, "glob", lambda pattern: ["/dev/video93", "/dev/video-bogus"])
    assert list_cameras() == []
    assert time.perf_counter() - t0 < 2.0


# ---------------------------------------------------------------------------- fake camera: reconnect
class FakeCamera:
    """A device that gives ``frames`` frames per session; opens fail while ``fail_opens`` > 0."""

    def __init__(self, frames_per_session: list[int], fail_opens: int) -> None:
        self.sessions = list(frames_per_session)
        self.fail_opens = fail_opens
        self.open_times: list[float] = []
        self.count = 0
        self.lock = threading.Lock()

    def open(self) -> FakeCapture:
        with self.lock:
            self.open_times.append(time.perf_counter())
            if len(self.open_times) > 1 and self.fail_opens > 0:
                self.fail_opens -= 1
                return FakeCapture(self, 0, opened=False)
            n = self.sessions.pop(0) if self.sessions else 10**9
            return FakeCapture(self, n, opened=True)


class FakeCapture:
    def __init__(self, cam: FakeCamera, n: int, opened: bool) -> None:
        self.cam, self.left, self.opened = cam, n, opened

    def isOpened(self) -> bool:  # noqa: N802
        return self.opened

    def read(self) -> tuple[bool, np.ndarray | None]:
        if not self.opened or self.left <= 0:
            return False, None
        self.left -= 1
        time.sleep(0.002)
        with self.cam.lock:
            self.cam.count += 1
            i = self.cam.count
        return True, pattern(i % 256)

    def get(self, prop: int) -> float:
        return 30.0 if prop == cv2.CAP_PROP_FPS else 0.0

    def release(self) -> None:
        self.opened = False


def test_camera_reconnects_with_exponential_backoff() -> None:
    cam = FakeCamera([5, 100000], fail_opens=4)
    states: list[tuple[str, str]] = []
    src = FrameSource(
        cam.open, kind="camera", name="camera 9", reconnect_backoff=(0.02, 0.08),
        on_status=lambda s, m: states.append((s, m)),
    )
    try:
        deadline = time.perf_counter() + 10
        while len(cam.open_times) < 6 and time.perf_counter() < deadline:
            src.read(0.5)
        # After the reconnect frames flow again.
        got = [src.read(2.0) for _ in range(3)]
        assert all(f is not None for f in got)
        assert src.state == "ok"
    finally:
        src.close()
    assert len(cam.open_times) == 6  # first open, 4 failures, 1 success
    gaps = np.diff(cam.open_times[1:])
    # Delays 0.02 (before the first retry), 0.04, 0.08, 0.08 (capped), 0.08: each gap at least its delay.
    assert list(gaps >= np.array([0.04, 0.08, 0.08, 0.08]) - 0.005) == [True] * 4, gaps
    assert gaps.max() < 2.0
    kinds = [s for s, _ in states]
    assert kinds[0] == "reconnecting" and kinds[-2:] == ["ok", "closed"]
    assert any("attempt 5" in m for _, m in states)
    assert "reconnected" in states[-2][1]


def test_lost_camera_never_crashes_and_close_is_prompt() -> None:
    cam = FakeCamera([3], fail_opens=10**6)
    src = FrameSource(cam.open, kind="camera", name="camera 1", reconnect_backoff=(5.0, 5.0))
    while src.state != "reconnecting":
        assert src.read(1.0) is not None or src.state == "reconnecting"
    assert src.read(0.05) is None and not src.eof  # timeout while reconnecting, not end of stream
    assert "retrying in 5.0 s" in src.message
    t0 = time.perf_counter()
    src.close()
    assert time.perf_counter() - t0 < 2.0, "close must interrupt the 5 s back-off sleep"
    assert src.eof


def test_camera_read_that_raises_is_treated_as_a_lost_camera() -> None:
    cam = FakeCamera([2, 100000], fail_opens=0)
    first = cam.open()
    real_read = first.read

    def read() -> tuple[bool, np.ndarray | None]:
        if first.left <= 0:
            raise cv2.error("VIDIOC_DQBUF: No such device")
        return real_read()

    first.read = read  # type: ignore[method-assign]
    caps = [first]
    src = FrameSource(lambda: caps.pop() if caps else cam.open(), kind="camera", name="camera 4",
                      reconnect_backoff=(0.01, 0.02))
    try:
        got = [src.read(2.0) for _ in range(5)]
    finally:
        src.close()
    assert all(f is not None for f in got) and src.error is None
    assert len(cam.open_times) == 2


def test_camera_open_failure_is_device_error() -> None:
    def opener() -> FakeCapture:
        return FakeCapture(FakeCamera([], 0), 0, opened=True)  # opens but gives no frame

    with pytest.raises(DeviceError, match="gave no frame"):
        FrameSource(opener, kind="camera", name="camera 3")


# ---------------------------------------------------------------------------- camera open path (fake OpenCV device)
class FakeVideoCapture:
    """Stands in for ``cv2.VideoCapture`` on a V4L2 webcam that offers 640x480 at most, MJPG at 30 fps."""

    instances: list[FakeVideoCapture] = []
    fail_after: int | None = None

    def __init__(self, index: int, backend: int) -> None:
        self.index, self.backend = index, backend
        self.calls: list[tuple[int, float]] = []
        self.props = {
            cv2.CAP_PROP_FRAME_WIDTH: 640.0, cv2.CAP_PROP_FRAME_HEIGHT: 480.0, cv2.CAP_PROP_FPS: 30.0,
            cv2.CAP_PROP_FOURCC: float(cv2.VideoWriter_fourcc(*"YUYV")),
        }
        self.reads = 0
        FakeVideoCapture.instances.append(self)

    def isOpened(self) -> bool:  # noqa: N802
        return self.index == 0

    def set(self, prop: int, value: float) -> bool:
        self.calls.append((prop, value))
        if prop == cv2.CAP_PROP_FOURCC:
            self.props[prop] = value
        elif prop in (cv2.CAP_PROP_FRAME_WIDTH, cv2.CAP_PROP_FRAME_HEIGHT):
            self.props[prop] = min(value, self.props[prop])
        return True

    def get(self, prop: int) -> float:
        return self.props.get(prop, 0.0)

    def getBackendName(self) -> str:  # noqa: N802
        return "V4L2"

    def read(self) -> tuple[bool, np.ndarray | None]:
        self.reads += 1
        if FakeVideoCapture.fail_after is not None and self.reads > FakeVideoCapture.fail_after:
            return False, None
        time.sleep(0.005)
        w, h = int(self.props[cv2.CAP_PROP_FRAME_WIDTH]), int(self.props[cv2.CAP_PROP_FRAME_HEIGHT])
        return True, pattern(self.reads, w, h)

    def release(self) -> None:
        pass


@pytest.fixture
def fake_v4l2(monkeypatch: pytest.MonkeyPatch) -> type[FakeVideoCapture]:
    FakeVideoCapture.instances = []
    FakeVideoCapture.fail_after = None
    monkeypatch.setattr(cv2, "VideoCapture", FakeVideoCapture)
    real_exists = sources.os.path.exists
    monkeypatch.setattr(sources.os.path, "exists", lambda p: p == "/dev/video0" or real_exists(p))
    monkeypatch.setattr(sources.sys, "platform", "linux")
    return FakeVideoCapture


def test_camera_requests_mjpg_size_fps_and_reports_what_it_got(
    fake_v4l2: type[FakeVideoCapture], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="realtime.sources")
    with open_source(0, size=(1280, 720), fps=30) as src:
        f = src.read(2.0)
        assert src.kind == "camera" and src.fps == 30.0
        assert (src.width, src.height) == (640, 480), "camera frames come at the size the device gives"
        assert f is not None and f.image.shape == (480, 640, 3)
    cap = fake_v4l2.instances[0]
    assert cap.backend == cv2.CAP_V4L2
    props = [p for p, _ in cap.calls]
    # MJPG first, then the size, then the rate (V4L2 validates the rate against format and size).
    assert props.index(cv2.CAP_PROP_FOURCC) < props.index(cv2.CAP_PROP_FRAME_WIDTH) < props.index(cv2.CAP_PROP_FPS)
    assert dict(cap.calls)[cv2.CAP_PROP_FOURCC] == cv2.VideoWriter_fourcc(*"MJPG")
    assert src.info["width"] == 640 and src.info["height"] == 480 and src.info["fourcc"] == "MJPG"
    assert src.info["requested"] == {"size": [1280, 720], "fps": 30, "fourcc": "MJPG"}
    assert "camera 0: 640x480 @ 30 fps, MJPG (asked 1280x720" in caplog.text


def test_camera_reconnect_through_open_source(fake_v4l2: type[FakeVideoCapture]) -> None:
    fake_v4l2.fail_after = 3  # every capture object gives 3 frames, then the device "disappears"
    states: list[str] = []
    with open_source("0", on_status=lambda s, m: states.append(s), reconnect_backoff=(0.01, 0.02)) as src:
        got = [src.read(2.0) for _ in range(8)]
    assert all(f is not None for f in got)
    assert len(fake_v4l2.instances) >= 3, "the device is reopened after each loss"
    assert "reconnecting" in states and "ok" in states
    idx = [f.index for f in got]
    assert idx == sorted(set(idx))


def test_camera_that_exists_but_does_not_open(
    fake_v4l2: type[FakeVideoCapture], monkeypatch: pytest.MonkeyPatch
) -> None:
    real_exists = sources.os.path.exists
    monkeypatch.setattr(sources.os.path, "exists", lambda p: p in ("/dev/video0", "/dev/video1") or real_exists(p))
    monkeypatch.setattr(sources, "list_cameras", lambda *a, **k: [0, 1])
    with pytest.raises(DeviceError, match="camera 1 exists but could not be opened"):
        open_source(1)
    monkeypatch.setattr(sources, "list_cameras", lambda *a, **k: [0])
    with pytest.raises(DeviceError, match="camera 1 not found; cameras that open: 0"):
        open_source(1)


def test_sources_benchmark_prints_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from realtime.benchmarks.sources import main

    out = tmp_path / "b.json"
    assert main(["--size", "64x48", "--frames", "15", "--json", str(out)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result == json.loads(out.read_text())
    assert result["frames"] == 15 and result["size"] == [64, 48]
    assert result["decode_ms_median"]["baseline_cv2_read"] > 0
    assert result["latest_slot_handoff_ms"]["median"] >= 0
    assert {"machine", "versions", "commit"} <= result.keys()
