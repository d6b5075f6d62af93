"""Frame sources: a camera, a video file or a still image behind one API.

``open_source(spec)`` returns a :class:`FrameSource`. Its capture thread reads frames and hands them to the
consumer in one of two ways:

* ``mode="latest"`` (live use): a one-frame slot. A new frame overwrites an unread one, which is counted in
  :attr:`FrameSource.dropped`, so a slow consumer always gets the newest frame and latency stays near one frame.
* ``mode="all"`` (offline render, throughput bench): a small bounded queue; the capture thread waits for the
  consumer, so every frame of a file arrives, in order, none skipped.

Files and images are delivered at their own frame rate when ``paced=True`` (like a camera, so that latency
measured from :attr:`Frame.t_capture` means capture to finished), or as fast as they decode when ``paced=False``.

Clock: every timestamp here is ``time.perf_counter()`` seconds (monotonic, highest resolution; on Linux the same
clock as ``time.monotonic()``). Use :func:`now` to compare against it.

Images are uint8 BGR, shape ``(H, W, 3)``, C-contiguous, owned by the consumer (never reused by the source).
"""

from __future__ import annotations

import dataclasses
import glob
import logging
import math
import os
import queue
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal, Protocol

import cv2
import numpy as np

from realtime.errors import DeviceError, InputError

log = logging.getLogger(__name__)

Kind = Literal["camera", "file", "image"]
Mode = Literal["latest", "all"]
Fit = Literal["cover", "stretch"]

#: File extensions read with ``cv2.imread`` as still images (anything else is tried as a video first).
IMAGE_EXTENSIONS = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm", ".jp2", ".exr", ".hdr"}
)

#: Frame rate used for still images and for files or cameras that do not report one.
DEFAULT_FPS = 30.0


def now() -> float:
    """The clock of :attr:`Frame.t_capture`: ``time.perf_counter()`` seconds."""
    return time.perf_counter()


@dataclasses.dataclass(frozen=True)
class Frame:
    """One captured frame.

    Attributes:
        image: ``(H, W, 3)`` uint8 BGR, C-contiguous; the consumer owns it.
        index: 0-based number of the frame in capture order. Gaps between the indices a consumer sees are the
            frames dropped by the latest-frame slot. For a looping file the index keeps counting across loops.
        t_capture: ``time.perf_counter()`` when the frame was read from the device or decoder (for a paced file,
            when it was due and read).
        t_media: position in the media in seconds. File: the frame's timestamp in the container (exact for
            variable-frame-rate files), or ``n / fps`` when an explicit ``fps`` retimes the file; it restarts on
            each loop. Camera and image: ``t_capture`` minus the time of the first frame. Offline renders pass
            it to :meth:`realtime.sinks.Recorder.write` so the output keeps the input's timing.
    """

    image: np.ndarray
    index: int
    t_capture: float
    t_media: float

    @property
    def width(self) -> int:
        return int(self.image.shape[1])

    @property
    def height(self) -> int:
        return int(self.image.shape[0])


class Capture(Protocol):
    """The part of ``cv2.VideoCapture`` a source uses; tests pass fakes with the same methods."""

    def isOpened(self) -> bool: ...  # noqa: N802 (OpenCV's name)

    def read(self) -> tuple[bool, np.ndarray | None]: ...

    def get(self, prop_id: int) -> float: ...

    def release(self) -> None: ...


Opener = Callable[[], Capture]
StatusCallback = Callable[[str, str], None]


class _StillCapture:
    """A ``Capture`` that returns one image forever (a still image used as a stream)."""

    def __init__(self, image: np.ndarray) -> None:
        self._image = image

    def isOpened(self) -> bool:  # noqa: N802
        return True

    def read(self) -> tuple[bool, np.ndarray]:
        return True, self._image

    def get(self, prop_id: int) -> float:
        return 0.0

    def release(self) -> None:
        pass


_EOF = object()


class FrameSource:
    """A capture thread delivering :class:`Frame` objects to one consumer.

    Most callers use :func:`open_source`; this constructor takes an ``opener`` callable returning a
    ``cv2.VideoCapture``-like object, so tests can inject fake devices. ``opener`` is called once here (so a
    source that cannot open fails in the caller's thread) and again to reconnect a camera or restart a looping
    file.

    Args:
        opener: returns an opened capture (see :class:`Capture`); may raise.
        kind: ``"camera"``, ``"file"`` or ``"image"``; decides what a failed read means (camera: reconnect;
            file: end of stream or loop; image: never fails).
        name: shown in messages (the path or ``"camera 0"``).
        size: ``(width, height)`` to resize file and image frames to, or None to keep theirs. Camera frames are
            delivered at the size the device gives (see :attr:`info`); resizing them would hide a device that
            ignored the request.
        fit: how file and image frames reach ``size``: ``"cover"`` scales to cover and crops the centre (keeps
            the aspect ratio), ``"stretch"`` resizes to exactly ``size``.
        fps: pacing rate for files and images (default: the file's own rate; images: 30). Given for a file, it
            also retimes it (:attr:`Frame.t_media` becomes ``n / fps``). Ignored for cameras, whose rate is set
            by :func:`open_source` and reported by the device.
        loop: restart a file at its end instead of ending the stream. Images: True repeats the image forever,
            False delivers it once.
        paced: deliver file and image frames no faster than ``fps`` (like a camera). Ignored for cameras.
        mode: ``"latest"`` (one-frame slot, drops counted) or ``"all"`` (bounded queue, nothing dropped).
        max_frames: end the stream after this many frames (None: no limit).
        queue_size: depth of the ``"all"`` queue (frames decoded ahead of the consumer).
        reconnect_backoff: ``(first, cap)`` seconds between camera reconnect attempts; the delay doubles after
            each failed attempt up to ``cap``.
        on_status: called from the capture thread as ``on_status(state, message)`` when :attr:`state` changes.
        info: what the device reported (camera) or the file's properties; exposed as :attr:`info`.
    """

    def __init__(
        self,
        opener: Opener,
        *,
        kind: Kind,
        name: str,
        size: tuple[int, int] | None = None,
        fit: Fit = "cover",
        fps: float | None = None,
        loop: bool = False,
        paced: bool = True,
        mode: Mode = "latest",
        max_frames: int | None = None,
        queue_size: int = 4,
        reconnect_backoff: tuple[float, float] = (0.5, 5.0),
        on_status: StatusCallback | None = None,
        info: dict[str, Any] | None = None,
    ) -> None:
        if kind not in ("camera", "file", "image"):
            raise InputError(f"source kind must be camera, file or image, got {kind!r}")
        if mode not in ("latest", "all"):
            raise InputError(f"source mode must be 'latest' or 'all', got {mode!r}")
        if fit not in ("cover", "stretch"):
            raise InputError(f"fit must be 'cover' or 'stretch', got {fit!r}")
        if size is not None and (len(size) != 2 or min(size) < 1):
            raise InputError(f"size must be (width, height) with both >= 1, got {size!r}")
        if fps is not None and not fps > 0:
            raise InputError(f"fps must be > 0, got {fps!r}")
        if max_frames is not None and max_frames < 1:
            raise InputError(f"max_frames must be >= 1, got {max_frames!r}")
        self._opener = opener
        self._kind: Kind = kind
        self.name = name
        self._size = (int(size[0]), int(size[1])) if size is not None else None
        self._fit: Fit = fit
        self._loop = loop
        self._paced = paced and kind != "camera"
        self._mode: Mode = mode
        self._max_frames = max_frames
        self._backoff = reconnect_backoff
        self._on_status = on_status
        # Shared with the opener of a camera, which refreshes it on every (re)connect.
        self.info: dict[str, Any] = info if info is not None else {}
        self._retime = fps is not None and kind == "file"

        self._cond = threading.Condition()
        self._slot: Frame | None = None  # latest mode: newest frame not yet read
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max(1, queue_size))  # all mode
        self._stop = threading.Event()
        self._eof = False
        self._eof_read = False  # all mode: the consumer has taken the end marker
        self._retry_delay = reconnect_backoff[0]
        self._error: str | None = None
        self._dropped = 0
        self._captured = 0
        self._state = "ok"
        self._message = ""

        self._cap = opener()  # raise here, in the caller's thread, if it cannot open
        self._first = self._first_read()
        self._first_t_media = -1.0  # set below once fps is known
        src_fps = _positive(self._cap.get(cv2.CAP_PROP_FPS))
        if kind == "camera":
            self._fps = src_fps or _positive(self.info.get("fps")) or DEFAULT_FPS
        else:
            self._fps = float(fps) if fps is not None else (src_fps or DEFAULT_FPS)
        self.info.setdefault("fps", self._fps)
        self._first_t_media = self._media_time(0, -1.0)
        h, w = self._first.shape[:2]
        self._out_size = self._size if (self._size is not None and kind != "camera") else (w, h)
        self.info.setdefault("source_width", w)
        self.info.setdefault("source_height", h)

        self._thread = threading.Thread(target=self._run, name=f"capture:{name}", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ properties
    @property
    def kind(self) -> Kind:
        """``"camera"``, ``"file"`` or ``"image"``."""
        return self._kind

    @property
    def width(self) -> int:
        """Width of delivered frames (a camera's may change after a reconnect; each Frame has its own)."""
        return self._out_size[0]

    @property
    def height(self) -> int:
        """Height of delivered frames."""
        return self._out_size[1]

    @property
    def fps(self) -> float:
        """Frames per second: the device's reported rate, the file's rate, or the pacing rate."""
        return self._fps

    @property
    def mode(self) -> Mode:
        return self._mode

    @property
    def dropped(self) -> int:
        """Frames overwritten in the latest-frame slot before the consumer read them."""
        return self._dropped

    @property
    def captured(self) -> int:
        """Frames read from the device or decoder so far."""
        return self._captured

    @property
    def eof(self) -> bool:
        """True once the stream has ended (file end, ``max_frames``, error or :meth:`close`) and is drained."""
        with self._cond:
            if self._mode == "latest":
                return self._eof and self._slot is None
            return self._eof_read or (self._eof and self._stop.is_set())

    @property
    def state(self) -> str:
        """``"ok"``, ``"reconnecting"`` (camera lost, retrying), ``"ended"`` (end of stream), ``"closed"`` or
        ``"error"`` (see :attr:`error`)."""
        return self._state

    @property
    def message(self) -> str:
        """Human-readable detail for :attr:`state` (e.g. ``"camera 0 lost; retrying in 2.0 s (attempt 3)"``)."""
        return self._message

    @property
    def error(self) -> str | None:
        """Why the stream stopped early, or None."""
        return self._error

    # ------------------------------------------------------------------ consumer API
    def read(self, timeout: float | None = None) -> Frame | None:
        """Wait for a frame newer than the last one read.

        Args:
            timeout: seconds to wait; None waits until a frame arrives or the stream ends.

        Returns:
            The frame, or None at end of stream or on timeout (check :attr:`eof` to tell them apart).
        """
        if self._mode == "all":
            return self._read_queue(timeout)
        deadline = None if timeout is None else now() + timeout
        with self._cond:
            while self._slot is None and not self._eof:
                remaining = None if deadline is None else deadline - now()
                if remaining is not None and remaining <= 0:
                    return None
                self._cond.wait(remaining)
            frame, self._slot = self._slot, None
            return frame

    def frames(self) -> Iterator[Frame]:
        """Yield frames until the end of the stream (use with ``mode="all"`` to get every frame in order)."""
        while True:
            frame = self.read()
            if frame is None:
                return
            yield frame

    __iter__ = frames

    def close(self) -> None:
        """Stop the capture thread and release the device. Safe to call more than once."""
        self._stop.set()
        with self._cond:
            self._eof = True
            self._cond.notify_all()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=5.0)
        # Drain the queue so a capture thread blocked on put() can see the stop flag.
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break

    def __enter__(self) -> FrameSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"FrameSource({self.name!r}, kind={self._kind}, {self.width}x{self.height}@{self._fps:g}, "
            f"mode={self._mode}, state={self._state})"
        )

    # ------------------------------------------------------------------ capture thread
    def _first_read(self) -> np.ndarray:
        ok, img = self._cap.read()
        if not ok or img is None:
            self._cap.release()
            if self._kind == "camera":
                raise DeviceError(f"{self.name} opened but gave no frame (is another program using it?)")
            raise InputError(f"{self.name} is not a video or image OpenCV can read (no frame could be decoded)")
        return img

    def _run(self) -> None:
        try:
            self._capture_loop()
        except Exception as exc:  # never let the thread die silently
            log.exception("capture from %s failed", self.name)
            self._error = f"capture from {self.name} failed: {exc}"
            self._set_state("error", self._error)
        finally:
            try:
                self._cap.release()
            except Exception:  # releasing a vanished device may itself fail
                pass
            with self._cond:
                self._eof = True
                self._cond.notify_all()
            if self._mode == "all":
                self._put(_EOF, final=True)
            if self._stop.is_set():
                self._set_state("closed", f"{self.name} closed")
            elif self._state == "ok":
                self._set_state("ended", f"{self.name}: end of stream")

    def _capture_loop(self) -> None:
        img: np.ndarray | None = self._first
        self._first = None  # type: ignore[assignment]
        t_media = self._first_t_media
        period = 1.0 / self._fps
        pos = 0  # frame position within the current pass over a file
        t_start = now()
        next_due = t_start
        while not self._stop.is_set():
            if img is None:
                ok, img = self._safe_read()
                if ok and img is not None and self._kind == "file":
                    t_media = self._media_time(pos, t_media)
                if not ok or img is None:
                    img = None
                    if self._kind == "camera":
                        if not self._reconnect():
                            return
                        continue
                    if self._kind == "file" and self._loop and pos > 0:
                        self._cap.release()
                        self._cap = self._opener()
                        pos = 0
                        continue
                    return  # end of file (or a decode error, recorded in self._error)
            if self._paced:
                delay = next_due - now()
                if delay > 0 and self._stop.wait(delay):
                    return
                # A decoder slower than the file's rate does not catch up in a burst: restart the schedule.
                next_due = max(next_due + period, now())
            t = now()
            self._retry_delay = self._backoff[0]
            if self._kind != "file":
                t_media = t - t_start
            frame = Frame(self._convert(img), self._captured, t, t_media)
            if self._kind != "image":
                img = None  # a still image is re-delivered; everything else reads a new frame
            pos += 1
            self._captured += 1
            self._deliver(frame)
            if self._max_frames is not None and self._captured >= self._max_frames:
                return
            if self._kind == "image" and not self._loop:
                return

    def _safe_read(self) -> tuple[bool, np.ndarray | None]:
        """``cap.read()``, with an exception (a broken device or stream) turned into a failed read."""
        try:
            return self._cap.read()
        except Exception as exc:
            log.warning("reading %s failed: %s", self.name, exc)
            if self._kind == "file":
                self._error = f"decoding {self.name} failed after {self._captured} frames: {exc}"
                self._set_state("error", self._error)
            return False, None

    def _media_time(self, pos: int, prev: float) -> float:
        """Seconds into the file of the frame just read.

        The container's timestamp when it is usable (right for variable-frame-rate files such as phone videos);
        ``pos / fps`` when the rate was overridden or the timestamp does not advance.
        """
        if self._kind == "file" and not self._retime:
            try:
                ms = float(self._cap.get(cv2.CAP_PROP_POS_MSEC))
            except (cv2.error, TypeError, ValueError):
                ms = math.nan
            if math.isfinite(ms) and ms >= 0 and (pos == 0 or ms / 1000.0 > prev):
                return ms / 1000.0
        return pos / self._fps

    def _convert(self, img: np.ndarray) -> np.ndarray:
        """Make ``img`` a uint8 BGR ``(H, W, 3)`` C-contiguous array at the output size, owned by the consumer."""
        # OpenCV's read() returns a new array each call; a still image (and any other capture) may not.
        owned = isinstance(self._cap, cv2.VideoCapture)
        bgr = _to_bgr8(img)
        owned = owned or bgr is not img
        if self._kind == "camera" and (bgr.shape[1], bgr.shape[0]) != self._out_size:
            # A reconnected device (or another one now at this index) may deliver another size.
            log.warning("%s now delivers %dx%d frames", self.name, bgr.shape[1], bgr.shape[0])
            self._out_size = (int(bgr.shape[1]), int(bgr.shape[0]))
        if self._kind != "camera" and self._size is not None and (bgr.shape[1], bgr.shape[0]) != self._size:
            return _resize(bgr, self._size, self._fit)  # a new array
        if not owned:
            return np.array(bgr, dtype=np.uint8, order="C", copy=True)
        return np.ascontiguousarray(bgr)

    def _deliver(self, frame: Frame) -> None:
        if self._mode == "all":
            self._put(frame)
            return
        with self._cond:
            if self._slot is not None:
                self._dropped += 1
            self._slot = frame
            self._cond.notify_all()

    def _put(self, item: Any, final: bool = False) -> None:
        """Put into the ``"all"`` queue, waiting for room but giving up when the source is closed."""
        while True:
            try:
                self._queue.put(item, timeout=0.05)
                return
            except queue.Full:
                if self._stop.is_set():
                    if final:
                        # Make room for the end marker so a reader still waiting wakes up.
                        try:
                            self._queue.get_nowait()
                        except queue.Empty:
                            pass
                        continue
                    return

    def _read_queue(self, timeout: float | None) -> Frame | None:
        if self._eof and self._stop.is_set() and self._queue.empty():
            return None
        try:
            item = self._queue.get(timeout=timeout)
        except queue.Empty:
            return None
        if item is _EOF:
            self._eof_read = True
            # Leave the marker for any later read so they also return None at once.
            try:
                self._queue.put_nowait(_EOF)
            except queue.Full:
                pass
            return None
        return item

    def _reconnect(self) -> bool:
        """Reopen a lost camera with exponential back-off until it returns or the source is closed."""
        cap = self._backoff[1]
        attempt = 0
        try:
            self._cap.release()
        except Exception:
            pass
        self._set_state("reconnecting", f"{self.name} stopped delivering frames; reconnecting")
        log.warning("%s stopped delivering frames; reconnecting", self.name)
        while not self._stop.is_set():
            attempt += 1
            delay = self._retry_delay
            # Grow the delay now; it is reset only after a frame is read, so a device that opens but gives no
            # frames still backs off.
            self._retry_delay = min(delay * 2.0, cap)
            msg = f"{self.name} lost; retrying in {delay:.1f} s (attempt {attempt})"
            self._set_state("reconnecting", msg)
            if self._stop.wait(delay):
                return False
            try:
                cap_obj = self._opener()
                ok = cap_obj.isOpened()
            except Exception as exc:  # a vanished device may raise instead of failing to open
                log.debug("reopening %s failed: %s", self.name, exc)
                ok = False
                cap_obj = None
            if ok and cap_obj is not None:
                self._cap = cap_obj
                log.info("%s reconnected after %d attempt(s)", self.name, attempt)
                self._set_state("ok", f"{self.name} reconnected")
                return True
            if cap_obj is not None:
                try:
                    cap_obj.release()
                except Exception:
                    pass
        return False

    def _set_state(self, state: str, message: str) -> None:
        changed = (state, message) != (self._state, self._message)
        self._state, self._message = state, message
        if changed and self._on_status is not None:
            try:
                self._on_status(state, message)
            except Exception:  # a broken UI callback must not stop capture
                log.exception("source status callback failed")


# ---------------------------------------------------------------------- opening sources
def open_source(
    spec: str | int | os.PathLike[str],
    size: tuple[int, int] | None = None,
    fps: float | None = None,
    loop: bool | None = None,
    paced: bool | None = None,
    *,
    mode: Mode = "latest",
    fit: Fit = "cover",
    max_frames: int | None = None,
    fourcc: str | None = "MJPG",
    on_status: StatusCallback | None = None,
    reconnect_backoff: tuple[float, float] = (0.5, 5.0),
) -> FrameSource:
    """Open a camera, a video file or a still image.

    Args:
        spec: a camera index (``0`` or ``"0"``), a V4L2 device path (``"/dev/video2"``), or a file path.
        size: ``(width, height)``. Cameras: the resolution requested from the device (it may give another;
            see :attr:`FrameSource.info`). Files and images: frames are resized to it (see ``fit``).
        fps: cameras: the rate requested from the device. Files: the pacing rate (default the file's own),
            which also retimes :attr:`Frame.t_media`. Images: the repeat rate (default 30).
        loop: files: restart at the end (default False). Images: repeat forever (default True) or deliver once.
        paced: files and images: deliver at ``fps`` like a camera (default True for ``mode="latest"``, False for
            ``mode="all"``). Cameras are paced by the device.
        mode: ``"latest"`` for live use (newest frame, drops counted) or ``"all"`` for every frame in order.
        fit: ``"cover"`` (scale and centre-crop, keeps aspect) or ``"stretch"`` when resizing files and images.
        max_frames: end the stream after this many frames.
        fourcc: pixel format requested from a camera; ``"MJPG"`` lets most USB webcams reach 30 fps at 720p and
            above, where raw YUYV often stalls at 5–10 fps. None leaves the device default.
        on_status: ``on_status(state, message)`` on camera loss and reconnect (called from the capture thread).
        reconnect_backoff: ``(first, cap)`` seconds between camera reconnect attempts.

    Returns:
        A started :class:`FrameSource`.

    Raises:
        InputError: the file does not exist or is not a video or image OpenCV can read; bad arguments.
        DeviceError: the camera does not exist (the message lists those that do) or cannot be opened.
    """
    if paced is None:
        paced = mode == "latest"
    camera = _camera_index(spec)
    if camera is not None:
        return _open_camera(
            camera, size, fps, mode=mode, fourcc=fourcc, on_status=on_status,
            reconnect_backoff=reconnect_backoff, max_frames=max_frames,
        )
    path = Path(os.fspath(spec)).expanduser()
    if not path.exists():
        raise InputError(f"{path}: no such file (expected a video, an image or a camera index)")
    if path.is_dir():
        raise InputError(f"{path} is a directory, expected a video or image file")
    if not os.access(path, os.R_OK):
        raise InputError(f"{path}: permission denied")
    common: dict[str, Any] = dict(
        size=size, fit=fit, fps=fps, paced=paced, mode=mode, max_frames=max_frames, on_status=on_status
    )
    image = _read_image(path) if path.suffix.lower() in IMAGE_EXTENSIONS else None
    if image is None:
        video_info = _probe_video(path)
        if video_info is not None:
            return FrameSource(
                lambda: _open_video(path), kind="file", name=str(path), loop=bool(loop), info=video_info, **common
            )
        image = _read_image(path)
    if image is None:
        raise InputError(f"{path} is not a video or image OpenCV can read")
    h, w = image.shape[:2]
    info = {"path": str(path), "width": w, "height": h}
    return FrameSource(
        lambda: _StillCapture(image), kind="image", name=str(path), loop=True if loop is None else loop,
        info=info, **common,
    )


def _camera_index(spec: str | int | os.PathLike[str]) -> int | None:
    if isinstance(spec, bool):
        raise InputError(f"source must be a camera index or a path, got {spec!r}")
    if isinstance(spec, int):
        if spec < 0:
            raise InputError(f"camera index must be >= 0, got {spec}")
        return spec
    if isinstance(spec, str):
        s = spec.strip()
        if s.isdigit():
            return int(s)
        m = re.fullmatch(r"/dev/video(\d+)", s)
        if m:
            return int(m.group(1))
    return None


def _open_camera(
    index: int,
    size: tuple[int, int] | None,
    fps: float | None,
    *,
    mode: Mode,
    fourcc: str | None,
    on_status: StatusCallback | None,
    reconnect_backoff: tuple[float, float],
    max_frames: int | None,
) -> FrameSource:
    name = f"camera {index}"
    if sys.platform.startswith("linux") and not os.path.exists(f"/dev/video{index}"):
        raise DeviceError(_missing_camera_message(index))
    info: dict[str, Any] = {}

    def opener() -> Capture:
        cap = _configure_camera(index, size, fps, fourcc)
        if cap.isOpened():
            info.update(_camera_info(cap, index, size, fps, fourcc))
        return cap

    try:
        cap = opener()
        opened = cap.isOpened()
    except cv2.error as exc:
        raise DeviceError(f"{name} could not be opened: {exc}") from exc
    if not opened:
        cap.release()
        cams = list_cameras()
        if index not in cams:
            raise DeviceError(_missing_camera_message(index, cams))
        raise DeviceError(f"{name} exists but could not be opened (is another program using it?)")
    first_cap = [cap]

    def opener_once() -> Capture:
        # The first call hands over the capture opened above; later calls (reconnects) open the device anew.
        if first_cap:
            return first_cap.pop()
        return opener()

    src = FrameSource(
        opener_once, kind="camera", name=name, mode=mode, on_status=on_status,
        reconnect_backoff=reconnect_backoff, max_frames=max_frames, info=info,
    )
    log.info(
        "%s: %sx%s @ %.3g fps, %s (asked %s @ %s fps, %s) via %s",
        name, info.get("width"), info.get("height"), src.fps, info.get("fourcc") or "?",
        "x".join(map(str, size)) if size else "default", fps or "default", fourcc or "default",
        info.get("backend", "?"),
    )
    return src


def _configure_camera(index: int, size: tuple[int, int] | None, fps: float | None, fourcc: str | None) -> Any:
    backend = cv2.CAP_V4L2 if sys.platform.startswith("linux") else cv2.CAP_ANY
    cap = cv2.VideoCapture(index, backend)
    if not cap.isOpened():
        return cap
    # The order matters on V4L2: the pixel format first, then the size, then the rate the format allows.
    if fourcc:
        cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*fourcc))
    if size is not None:
        cap.set(cv2.CAP_PROP_FRAME_WIDTH, int(size[0]))
        cap.set(cv2.CAP_PROP_FRAME_HEIGHT, int(size[1]))
    if fps is not None:
        cap.set(cv2.CAP_PROP_FPS, float(fps))
    # A small driver queue keeps latency near one frame.
    cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
    return cap


def _camera_info(
    cap: Any, index: int, size: tuple[int, int] | None, fps: float | None, fourcc: str | None
) -> dict[str, Any]:
    code = int(cap.get(cv2.CAP_PROP_FOURCC))
    got_fourcc = "".join(chr((code >> (8 * i)) & 0xFF) for i in range(4)).strip("\0 ") if code > 0 else ""
    try:
        backend = cap.getBackendName()
    except (cv2.error, AttributeError):
        backend = "?"
    return {
        "index": index,
        "backend": backend,
        "width": int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)),
        "height": int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)),
        "fps": _positive(cap.get(cv2.CAP_PROP_FPS)),
        "fourcc": got_fourcc,
        "requested": {"size": list(size) if size else None, "fps": fps, "fourcc": fourcc},
    }


def _missing_camera_message(index: int, cams: list[int] | None = None) -> str:
    if cams is None:
        cams = list_cameras()
    if cams:
        return f"camera {index} not found; cameras that open: {', '.join(map(str, cams))}"
    return f"camera {index} not found; no cameras were found on this machine"


def list_cameras(max_index: int = 10, timeout: float = 2.0) -> list[int]:
    """Camera indices that open.

    On Linux only existing ``/dev/videoN`` nodes are probed (metadata nodes of a webcam fail to open and are left
    out), so it returns at once when there are none. Elsewhere indices ``0..max_index-1`` are tried. Each probe
    runs in a daemon thread and is abandoned after ``timeout`` seconds, so a wedged driver cannot hang the caller.
    """
    if sys.platform.startswith("linux"):
        candidates = sorted(
            int(m.group(1))
            for p in glob.glob("/dev/video*")
            if (m := re.fullmatch(r"/dev/video(\d+)", p))
        )
        backend = cv2.CAP_V4L2
    else:
        candidates = list(range(max_index))
        backend = cv2.CAP_ANY
    found = []
    for idx in candidates:
        result: list[bool] = []

        def probe(i: int = idx) -> None:
            try:
                cap = cv2.VideoCapture(i, backend)
                result.append(bool(cap.isOpened()))
                cap.release()
            except Exception:
                result.append(False)

        t = threading.Thread(target=probe, daemon=True, name=f"probe-camera-{idx}")
        t.start()
        t.join(timeout)
        if result and result[0]:
            found.append(idx)
    return found


def _open_video(path: Path) -> Any:
    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    if not cap.isOpened():
        cap.release()
        cap = cv2.VideoCapture(str(path))
    return cap


def _probe_video(path: Path) -> dict[str, Any] | None:
    """The file's properties if OpenCV opens it as a video with at least one frame, else None."""
    try:
        cap = _open_video(path)
    except cv2.error:
        return None
    try:
        if not cap.isOpened():
            return None
        ok, img = cap.read()
        if not ok or img is None:
            return None
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        return {
            "path": str(path),
            "width": int(img.shape[1]),
            "height": int(img.shape[0]),
            "fps": _positive(cap.get(cv2.CAP_PROP_FPS)),
            "frame_count": n if n > 0 else None,
            "backend": cap.getBackendName(),
        }
    finally:
        cap.release()


def _read_image(path: Path) -> np.ndarray | None:
    try:
        # imdecode instead of imread: works with any path encoding and never prints to stderr on bad data.
        data = np.fromfile(str(path), dtype=np.uint8)
        if data.size == 0:
            return None
        img = cv2.imdecode(data, cv2.IMREAD_COLOR)
    except (cv2.error, OSError, ValueError):
        return None
    return img


def _to_bgr8(img: np.ndarray) -> np.ndarray:
    """Coerce what a capture returned to uint8 BGR ``(H, W, 3)``."""
    if img.dtype != np.uint8:
        if img.dtype == np.uint16:
            img = (img >> 8).astype(np.uint8)
        else:
            img = np.clip(img, 0, 255).astype(np.uint8)
    if img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    elif img.shape[2] == 1:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    elif img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2BGR)
    return img


def _resize(img: np.ndarray, size: tuple[int, int], fit: Fit) -> np.ndarray:
    """Resize ``(H, W, 3)`` to ``size=(w, h)``: ``cover`` scales to cover then centre-crops; ``stretch`` scales."""
    w, h = size
    ih, iw = img.shape[:2]
    if fit == "cover":
        scale = max(w / iw, h / ih)
        sw, sh = max(w, math.ceil(iw * scale - 1e-6)), max(h, math.ceil(ih * scale - 1e-6))
    else:
        scale = min(w / iw, h / ih)
        sw, sh = w, h
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    out = cv2.resize(img, (sw, sh), interpolation=interp) if (sw, sh) != (iw, ih) else img
    if (sw, sh) != (w, h):
        x0, y0 = (sw - w) // 2, (sh - h) // 2
        out = out[y0 : y0 + h, x0 : x0 + w]
    return np.ascontiguousarray(out)


def _positive(value: Any) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) and v > 0 else None


def _main(argv: list[str] | None = None) -> int:
    import argparse
    import json

    parser = argparse.ArgumentParser(prog="python -m realtime.sources", description="List the cameras that open.")
    parser.add_argument("--list-cameras", action="store_true", help="print the camera indices that open and exit")
    parser.parse_args(argv)
    print(json.dumps({"cameras": list_cameras()}))
    return 0


if __name__ == "__main__":
    sys.exit(_main())
