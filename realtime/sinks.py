"""Outputs for finished frames: an H.264 recorder that survives crashes, and PNG snapshots.

:class:`Recorder` encodes in its own thread from a bounded queue. When the encoder falls behind, ``write`` waits
for room (back-pressure) and says so through :attr:`Recorder.behind`, ``stalls`` and ``blocked_ms``: a recorded
frame is never dropped silently. The container is chosen so that a killed process still leaves a playable file:
Matroska (``.mkv``, the default) or fragmented MP4 (``.mp4``/``.mov``), with a keyframe every second and a cluster/
fragment handed to the operating system every :data:`FLUSH_INTERVAL_MS`. The file appears only with its first
cluster, so a file that exists always opens, and a crash (even ``kill -9``) loses at most one cluster plus the
encoder's lookahead: ~0.65 s at 30 fps, from the first frame on (``python -m realtime.benchmarks.crash_safety``).
A full disk stops the recording; space held back at the start (:data:`RESERVE_BYTES`) finishes the file, and the
error says how many frames it really holds (or that nothing was saved, and no file is left).

Frames are uint8 BGR ``(H, W, 3)``, as produced by :mod:`realtime.sources` and the pipeline.
"""

from __future__ import annotations

import atexit
import concurrent.futures
import contextlib
import datetime as _dt
import errno
import logging
import os
import queue
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np

from realtime.errors import DeviceError, InputError

log = logging.getLogger(__name__)

#: Timestamps are written in milliseconds of capture time.
TIME_BASE = Fraction(1, 1000)

#: Container per file extension. MP4 and MOV are written fragmented so an interrupted file still plays.
CONTAINERS = {".mkv": "matroska", ".mp4": "mp4", ".mov": "mov"}
X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")
_FRAGMENTED_MOVFLAGS = "frag_keyframe+empty_moov+default_base_moof"

#: Longest stretch of video the muxer holds before handing it to the file: a Matroska cluster or MP4 fragment
#: ends at least this often. What a crash can lose is this plus the encoder's lookahead; each cluster costs a
#: few bytes (a fragment ~100), so shorter clusters are nearly free.
FLUSH_INTERVAL_MS = 250

#: Space held back on the recording's disk so that a recording stopped by a full disk can still be finished:
#: the rest of the cluster being written, the frames inside the encoder, the index.
RESERVE_BYTES = 8 << 20

_STOP = object()


def muxer_options(fmt: str, flush_interval_ms: int = FLUSH_INTERVAL_MS) -> dict[str, str]:
    """FFmpeg muxer options for a recording in ``fmt`` (``"matroska"``, ``"mp4"`` or ``"mov"``).

    Every finished cluster/fragment goes to the file at once, and one ends at least every ``flush_interval_ms``:
    that bounds what a crash can lose, from the first frame on. MP4/MOV are fragmented so an unfinished file plays.
    """
    options = {"flush_packets": "1"}
    if fmt == "matroska":
        options["cluster_time_limit"] = str(flush_interval_ms)
    else:
        options["movflags"] = _FRAGMENTED_MOVFLAGS
        options["frag_duration"] = str(flush_interval_ms * 1000)  # microseconds
    return options


class OutputFile:
    """The recording's file: it appears only once it opens, takes every byte or raises, and holds space back.

    Until :meth:`commit`, bytes collect in memory and no file exists, so a process killed before the first
    cluster/fragment is complete leaves nothing rather than a header that no player opens; :meth:`commit`
    creates the file and writes the header and the first cluster in one go. From then on bytes go straight to
    the operating system (no user-space buffer), so a killed process loses nothing already written. FFmpeg
    ignores short writes from a custom writer, so ``write`` loops until all bytes are out.

    ``reserve`` bytes are allocated on the same disk (in an anonymous file that vanishes with the process) when
    the file is opened. When the disk fills up, they are given back, the write that failed is retried in that
    room and :attr:`out_of_space` is set: the recorder then finishes the file (last cluster, index, duration)
    instead of leaving it cut off in the middle of a cluster.

    Args:
        path: the file to create (an existing one is replaced at :meth:`commit`).
        reserve: bytes to hold back; 0 holds none.

    Attributes:
        bytes_written: all bytes handed over, rewrites of headers included. size: current file size.
        out_of_space: the disk filled up and the reserve has been used.
        write_error: the error a write raised, once one has.

    Raises:
        OSError: the reserve cannot be allocated (``ENOSPC``: the disk is already full).
    """

    def __init__(self, path: Path, reserve: int = RESERVE_BYTES) -> None:
        self.path = path
        self._fd = -1
        self._mem: bytearray | None = bytearray()  # the file's bytes until commit()
        self._pos = 0
        self._closed = False
        self.bytes_written = 0
        self.size = 0
        self.out_of_space = False
        self.write_error: OSError | None = None
        self._reserve_fd = -1
        self._reserved = 0
        if reserve > 0:
            self._hold(reserve)

    # ------------------------------------------------------------------ the reserve
    def _hold(self, n: int) -> None:
        """Allocate ``n`` bytes in an unnamed file beside :attr:`path` (sets ``_reserved``)."""
        directory = self.path.parent
        try:
            fd = os.open(directory, os.O_TMPFILE | os.O_RDWR, 0o600)  # Linux: never has a name
        except (AttributeError, OSError):
            fd, name = tempfile.mkstemp(prefix=".stylecam-reserve-", dir=directory)
            try:
                os.unlink(name)  # the space stays allocated while fd is open, and is freed when the process ends
            except OSError:  # a system that cannot unlink open files: record without a reserve
                os.close(fd)
                with contextlib.suppress(OSError):
                    os.unlink(name)
                return
        try:
            try:
                os.posix_fallocate(fd, 0, n)
            except (AttributeError, OSError) as exc:
                if isinstance(exc, OSError) and exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
                    raise
                chunk = bytes(1 << 20)
                for offset in range(0, n, len(chunk)):
                    os.write(fd, chunk[: n - offset])
        except BaseException:
            os.close(fd)
            raise
        self._reserve_fd, self._reserved = fd, n

    def _release(self) -> None:
        """Give the reserve back to the disk (clears ``_reserved``)."""
        fd, self._reserve_fd, self._reserved = self._reserve_fd, -1, 0
        if fd >= 0:
            os.close(fd)

    def _os_write(self, fd: int, data: memoryview) -> int:
        """``os.write``; a test replaces it (with ``_hold`` and ``_release``) to model a small disk."""
        return os.write(fd, data)

    # ------------------------------------------------------------------ the file
    @property
    def committed(self) -> bool:
        """True once the file exists on disk."""
        return self._mem is None

    def commit(self) -> None:
        """Create the file and write what collected in memory (header and first cluster) at once."""
        if self._mem is None:
            return
        data, self._mem = self._mem, None
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        self._write_all(memoryview(data))
        os.lseek(self._fd, self._pos, os.SEEK_SET)

    def write(self, data: bytes | memoryview) -> int:
        view = memoryview(data)
        n = len(view)
        if self._mem is not None:
            if self._pos > len(self._mem):
                self._mem.extend(bytes(self._pos - len(self._mem)))
            self._mem[self._pos : self._pos + n] = view
        else:
            self._write_all(view)
        self._pos += n
        self.bytes_written += n
        self.size = max(self.size, self._pos)
        return n

    def _write_all(self, view: memoryview) -> None:
        try:
            while view:
                try:
                    n = self._os_write(self._fd, view)
                except OSError as exc:
                    if exc.errno != errno.ENOSPC or not self._reserved:
                        raise
                    self._release()  # finish in the room held back for this
                    self.out_of_space = True
                    continue
                if n <= 0:
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                view = view[n:]
        except OSError as exc:
            self.write_error = exc
            raise

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        if whence == os.SEEK_CUR:
            offset += self._pos
        elif whence == os.SEEK_END:
            offset += self.size
        if self._mem is None:
            os.lseek(self._fd, offset, os.SEEK_SET)
        self._pos = offset
        return offset

    def tell(self) -> int:
        return self._pos

    def truncate(self, size: int) -> None:
        """Cut the file to ``size`` bytes (gives space back to a full disk)."""
        if self._mem is not None:
            del self._mem[size:]
        elif self._fd >= 0:
            os.ftruncate(self._fd, size)
        self.size = min(self.size, size)

    def flush(self) -> None:
        pass  # unbuffered

    def close(self) -> None:
        self._closed = True
        self._release()
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            os.close(fd)

    @property
    def closed(self) -> bool:
        return self._closed


def check_writable(path: str | os.PathLike[str]) -> Path:
    """Check, before any work starts, that ``path`` can be created or overwritten.

    Returns:
        The path, user-expanded.

    Raises:
        InputError: the directory is missing or not writable, or ``path`` is a directory.
    """
    p = Path(os.fspath(path)).expanduser()
    parent = p.parent if str(p.parent) else Path(".")
    if p.is_dir():
        raise InputError(f"{p} is a directory, expected an output file name")
    if not parent.exists():
        raise InputError(f"cannot write {p}: directory {parent} does not exist")
    if not parent.is_dir():
        raise InputError(f"cannot write {p}: {parent} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK) or (p.exists() and not os.access(p, os.W_OK)):
        raise InputError(f"cannot write {p}: permission denied")
    return p


def h264_encoders() -> list[str]:
    """H.264 encoders this PyAV build has, most preferred first (``auto`` uses the first that opens)."""
    return [c for c in ("h264_nvenc", "libx264") if c in av.codecs_available]


_nvenc_ok: dict[tuple[int, int], bool] = {}


def nvenc_works(width: int = 256, height: int = 256) -> bool:
    """Whether ``h264_nvenc`` is present and opens (a driver and an NVENC-capable GPU). Cached per size."""
    key = (width, height)
    if key not in _nvenc_ok:
        ok = False
        if "h264_nvenc" in av.codecs_available:
            try:
                ctx = av.CodecContext.create("h264_nvenc", "w")
                ctx.width, ctx.height, ctx.pix_fmt = width, height, "yuv420p"
                ctx.time_base = TIME_BASE
                ctx.framerate = Fraction(30)
                ctx.open()
                # Encoding one frame catches drivers that open but cannot encode (e.g. too many sessions).
                frame = av.VideoFrame(width, height, "yuv420p")
                frame.pts = 0
                ctx.encode(frame)
                ctx.encode(None)
                ok = True
            except Exception as exc:  # any failure means: use the CPU encoder
                log.debug("h264_nvenc unavailable: %s", exc)
        _nvenc_ok[key] = ok
    return _nvenc_ok[key]


def _container_format(path: Path) -> str:
    """The muxer name for a recording's extension, or an :class:`InputError` naming the ones supported."""
    fmt = CONTAINERS.get(path.suffix.lower())
    if fmt is None:
        raise InputError(
            f"{path}: unsupported recording format {path.suffix or '(no extension)'!r}; "
            f"use {', '.join(CONTAINERS)}"
        )
    return fmt


def _check_recording_settings(width: int, height: int, fps: float, queue_size: int, flush_interval_ms: int) -> None:
    if width < 2 or height < 2:
        raise InputError(f"recording size must be at least 2x2, got {width}x{height}")
    if not fps > 0:
        raise InputError(f"recording fps must be > 0, got {fps}")
    if queue_size < 1:
        raise InputError(f"queue_size must be >= 1, got {queue_size}")
    if flush_interval_ms < 1:
        raise InputError(f"flush_interval_ms must be >= 1, got {flush_interval_ms}")


def _even_size(width: int, height: int) -> tuple[int, int]:
    """The size to encode: H.264 4:2:0 needs even sizes; losing one edge pixel beats refusing to record."""
    enc_w, enc_h = width & ~1, height & ~1
    if (enc_w, enc_h) != (width, height):
        log.warning("recording %dx%d as %dx%d (H.264 needs an even size)", width, height, enc_w, enc_h)
    return enc_w, enc_h


def _open_output(opener: Callable[[Path], OutputFile], path: Path) -> OutputFile:
    """``opener(path)``, with a full disk and other OS errors as one-line errors naming the file."""
    try:
        return opener(path)
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise DeviceError(
                f"cannot record to {path}: the disk is full "
                f"(recording needs {RESERVE_BYTES >> 20} MB free to start)"
            ) from exc
        raise InputError(f"cannot write {path}: {exc.strerror or exc}") from exc


class Recorder:
    """Record frames to an H.264 file from a background thread.

    Timestamps come from capture time: the first frame is at 0 and each frame at ``t_capture - t_first``
    (milliseconds, :data:`TIME_BASE`); frames that land on the same millisecond are pushed one tick later so
    timestamps strictly increase. The file therefore plays at the rate frames were captured, even when the
    pipeline's rate varied.

    Args:
        path: output file; ``.mkv`` (Matroska), ``.mp4`` or ``.mov`` (fragmented). An existing file is replaced.
        width, height: frame size. An odd size is cropped by one pixel to the even size H.264 4:2:0 needs.
        fps: nominal rate (a hint for rate control and players; the timestamps decide playback).
        codec: ``"auto"`` (``h264_nvenc`` when it opens, else ``libx264``), ``"libx264"`` or ``"h264_nvenc"``.
        crf: quality for libx264 (lower is better; 18–23 is typical); nvenc uses it as its constant quality.
        preset: libx264 preset. ``veryfast`` costs ~18 ms of CPU per 1080p frame (about half a core at 30 fps);
            ``superfast``/``ultrafast`` save only 15–35% of that for 1.7–2x the bits
            (``python -m realtime.benchmarks.recorder --size 1920x1080 --preset ...`` measures it).
        queue_size: frames that may wait for the encoder before ``write`` blocks.
        flush_interval_ms: longest cluster/fragment (:data:`FLUSH_INTERVAL_MS`), which bounds what a crash loses.
        on_behind: ``on_behind(True|False)`` from the writing thread when the encoder starts or stops holding
            ``write`` back.
        on_error: ``on_error(message)`` from the encoder thread when recording stops on an error.
        opener: makes the :class:`OutputFile` (default); tests inject files on a simulated small disk.

    Attributes:
        path: the output file. codec: the encoder in use. preset: the libx264 preset.
        frames_in: frames accepted by :meth:`write`. frames_written: frames encoded and muxed.
        stalls: writes that had to wait for the encoder. blocked_ms: total time writes waited.
        behind: True while the encoder holds writes back (also reported through ``on_behind``).

    Raises:
        InputError: the directory is not writable, the extension is not supported, the size or rate is invalid.
        DeviceError: the requested encoder is not available.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        width: int,
        height: int,
        fps: float,
        codec: str = "auto",
        *,
        crf: int = 21,
        preset: str = "veryfast",
        queue_size: int = 8,
        flush_interval_ms: int = FLUSH_INTERVAL_MS,
        on_behind: Callable[[bool], None] | None = None,
        on_error: Callable[[str], None] | None = None,
        opener: Callable[[Path], OutputFile] = OutputFile,
    ) -> None:
        self.path = check_writable(path)
        fmt = _container_format(self.path)
        _check_recording_settings(width, height, fps, queue_size, flush_interval_ms)
        self._flush_ms = int(flush_interval_ms)
        self.width, self.height, self.fps = int(width), int(height), float(fps)
        self._enc_w, self._enc_h = _even_size(self.width, self.height)
        self.codec = self._pick_codec(codec)
        if preset not in X264_PRESETS:
            raise InputError(f"unknown x264 preset {preset!r}; expected one of {', '.join(X264_PRESETS)}")
        self.preset, self._crf = preset, int(crf)
        self._on_behind = on_behind
        self._on_error = on_error

        self._queue: queue.Queue[Any] = queue.Queue(maxsize=queue_size)
        self._lock = threading.Lock()
        self._closed = False
        self._error: str | None = None
        self._error_raised = False
        self._t0: float | None = None
        self._last_pts = -1
        self.frames_in = 0
        self.frames_written = 0
        self.stalls = 0
        self.blocked_ms = 0.0
        self.behind = False
        self._last_written_pts = -1
        self._saved_s: float | None = None  # seconds that decode, once a failure has been accounted for
        self._good_size = 0  # file size after the last complete cluster/fragment

        self._file = _open_output(opener, self.path)
        try:
            self._container, self._stream = self._open_container(fmt)
        except Exception:
            self._file.close()  # nothing was created: the file appears with its first cluster
            raise
        self._header_size = self._file.size
        self._thread = threading.Thread(target=self._run, name=f"recorder:{self.path.name}", daemon=True)
        self._thread.start()
        # An exception that unwinds past the owner still finalizes the file at interpreter exit.
        atexit.register(self._close_at_exit)
        log.info(
            "recording %s: %dx%d @ %g fps, %s, %s", self.path, self._enc_w, self._enc_h, self.fps, self.codec, fmt
        )

    # ------------------------------------------------------------------ setup
    def _pick_codec(self, codec: str) -> str:
        if codec == "auto":
            if nvenc_works(self._enc_w, self._enc_h):
                return "h264_nvenc"
            if "libx264" in av.codecs_available:
                return "libx264"
            raise DeviceError("no H.264 encoder found in this PyAV build (need libx264 or h264_nvenc)")
        if codec == "h264_nvenc":
            if not nvenc_works(self._enc_w, self._enc_h):
                raise DeviceError("h264_nvenc does not work here (no NVIDIA GPU/driver with NVENC); use libx264")
            return codec
        if codec == "libx264":
            if codec not in av.codecs_available:
                raise DeviceError("libx264 is not in this PyAV build")
            return codec
        raise InputError(f"unknown recording codec {codec!r}; expected auto, libx264 or h264_nvenc")

    def _open_container(self, fmt: str) -> tuple[Any, Any]:
        container = av.open(self._file, mode="w", format=fmt, options=muxer_options(fmt, self._flush_ms))
        gop = max(1, round(self.fps))  # a keyframe (and so a new fragment) every second
        # No B-frames: presentation times stay exactly the capture times (MP4 would otherwise shift the start by
        # the reorder delay) and fewer frames sit inside the encoder when the process dies.
        stream = container.add_stream(self.codec, rate=Fraction(self.fps).limit_denominator(1001))
        stream.width, stream.height, stream.pix_fmt = self._enc_w, self._enc_h, "yuv420p"
        stream.time_base = TIME_BASE
        stream.codec_context.time_base = TIME_BASE
        # Frames are converted with OpenCV's BT.601 limited-range matrix (see _encode_one); tag the stream so
        # players do not assume BT.709 for HD sizes and shift the colours. FFmpeg enum values (pixfmt.h):
        # AVCOL_SPC/PRI/TRC_SMPTE170M = 6, AVCOL_RANGE_MPEG = 1.
        cc = stream.codec_context
        cc.colorspace, cc.color_primaries, cc.color_trc, cc.color_range = 6, 6, 6, 1
        # x264's default of 1.5 threads per core means ~25 frames inside the encoder on a 16-core machine: more
        # to lose in a crash and more cores taken from the pipeline. Four keep 1080p30 real-time.
        cc.thread_count = min(4, os.cpu_count() or 1)
        if self.codec == "libx264":
            stream.codec_context.options = {
                "preset": self.preset, "crf": str(self._crf), "g": str(gop), "bf": "0",
            }
        else:
            stream.codec_context.options = {
                "preset": "p4", "tune": "ll", "rc": "vbr", "cq": str(self._crf), "g": str(gop), "bf": "0",
            }
        try:
            stream.codec_context.open()
            container.start_encoding()  # the header, into memory until the first cluster joins it
        except Exception as exc:
            container.close()
            raise DeviceError(f"cannot open the {self.codec} encoder for {self.path}: {exc}") from exc
        return container, stream

    # ------------------------------------------------------------------ producer API
    def write(self, frame: np.ndarray, t_capture: float | None = None, *, copy: bool = True) -> None:
        """Queue one frame for encoding; blocks while the queue is full (the encoder is behind).

        Args:
            frame: ``(height, width, 3)`` uint8 BGR.
            t_capture: capture time in seconds on any monotonic clock (only differences matter), e.g.
                :attr:`realtime.sources.Frame.t_capture`; None uses ``time.perf_counter()`` now. For offline
                renders pass :attr:`realtime.sources.Frame.t_media` so the output keeps the input's timing.
                Use one clock for the whole recording; a step back is clamped to one tick after the last frame.
            copy: copy ``frame`` before queueing (the default); pass False only when the caller will not touch
                the array again.

        Raises:
            DeviceError: recording stopped on an error (disk full, write failure) or the recorder is closed.
            InputError: the frame has the wrong shape or type.
        """
        # Serialised with close(): a frame accepted here is always encoded before the file is finalized.
        with self._lock:
            self._write_locked(frame, t_capture, copy)

    def _write_locked(self, frame: np.ndarray, t_capture: float | None, copy: bool) -> None:
        self._raise_if_failed()
        if self._closed:
            raise DeviceError(f"recording to {self.path} is already closed")
        if not (
            isinstance(frame, np.ndarray)
            and frame.dtype == np.uint8
            and frame.shape == (self.height, self.width, 3)
        ):
            got = f"{frame.shape} {frame.dtype}" if isinstance(frame, np.ndarray) else type(frame).__name__
            raise InputError(
                f"recorder for {self.path} expects ({self.height}, {self.width}, 3) uint8 BGR frames, got {got}"
            )
        if t_capture is None:
            t_capture = time.perf_counter()
        if self._t0 is None:
            self._t0 = t_capture
        pts = round((t_capture - self._t0) * TIME_BASE.denominator / TIME_BASE.numerator)
        if pts <= self._last_pts:
            pts = self._last_pts + 1  # same millisecond (or a clock step back): keep pts strictly increasing
        self._last_pts = pts
        item = (np.array(frame, copy=True) if copy else frame, pts)
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            self._wait_for_room(item)
        else:
            if self.behind and self._queue.qsize() <= self._queue.maxsize // 2:
                self._set_behind(False)
        self.frames_in += 1

    def _wait_for_room(self, item: tuple[np.ndarray, int]) -> None:
        self.stalls += 1
        self._set_behind(True)
        t0 = time.perf_counter()
        try:
            while True:
                try:
                    self._queue.put(item, timeout=0.1)
                    return
                except queue.Full:
                    # The encoder thread may have stopped on an error while we waited.
                    self._raise_if_failed()
                    if not self._thread.is_alive():
                        raise DeviceError(f"recording to {self.path} stopped unexpectedly") from None
        finally:
            self.blocked_ms += (time.perf_counter() - t0) * 1000.0

    def _set_behind(self, behind: bool) -> None:
        if behind == self.behind:
            return
        self.behind = behind
        if behind and self.stalls == 1:
            # Once per recording; the count and total wait are in the closing log line and stats().
            log.info("recorder for %s is behind; writes wait for the encoder", self.path)
        if self._on_behind is not None:
            try:
                self._on_behind(behind)
            except Exception:
                log.exception("recorder on_behind callback failed")

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            self._error_raised = True
            raise DeviceError(self._error)

    # ------------------------------------------------------------------ state
    @property
    def error(self) -> str | None:
        """Why recording stopped (e.g. the disk is full), or None."""
        return self._error

    @property
    def closed(self) -> bool:
        """True once :meth:`close` has been called."""
        return self._closed

    @property
    def bytes_written(self) -> int:
        """Size of the file on disk so far."""
        size = getattr(self._file, "size", None)
        return int(size) if size is not None else _file_size(self.path)

    @property
    def duration(self) -> float:
        """Seconds of video encoded so far (timestamp span plus one frame); after a failure, what the file holds."""
        if self._saved_s is not None:
            return self._saved_s
        if self._last_written_pts < 0:
            return 0.0
        return self._last_written_pts * float(TIME_BASE) + 1.0 / self.fps

    @property
    def queued(self) -> int:
        """Frames waiting for the encoder."""
        return self._queue.qsize()

    def stats(self) -> dict[str, Any]:
        """Counters for a status line or a JSON report."""
        return {
            "path": str(self.path),
            "codec": self.codec,
            "width": self._enc_w,
            "height": self._enc_h,
            "frames_in": self.frames_in,
            "frames_written": self.frames_written,
            "queued": self.queued,
            "bytes": self.bytes_written,
            "duration_s": round(self.duration, 3),
            "stalls": self.stalls,
            "blocked_ms": round(self.blocked_ms, 1),
            "behind": self.behind,
            "error": self._error,
        }

    # ------------------------------------------------------------------ shutdown
    def close(self) -> None:
        """Flush the encoder and finalize the file. Safe to call more than once.

        Waits for a :meth:`write` in progress in another thread; writes after ``close`` raise.

        Raises:
            DeviceError: recording had stopped on an error not yet raised by :meth:`write`.
        """
        with self._lock:
            if not self._closed:
                self._closed = True
                atexit.unregister(self._close_at_exit)
                while self._thread.is_alive():
                    try:
                        self._queue.put(_STOP, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                self._thread.join()
                self._set_behind(False)
                log.info(
                    "recording %s finished: %d frames, %.1f s, %d bytes%s",
                    self.path, self.frames_written, self.duration, self.bytes_written,
                    f", waited {self.blocked_ms:.0f} ms for the encoder ({self.stalls} stalls)" if self.stalls else "",
                )
        if self._error is not None and not self._error_raised:
            self._raise_if_failed()

    def _close_at_exit(self) -> None:
        try:
            self.close()
        except Exception as exc:
            log.error("%s", exc)

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Recorder({str(self.path)!r}, {self._enc_w}x{self._enc_h}, {self.codec}, frames={self.frames_written})"

    # ------------------------------------------------------------------ encoder thread
    def _run(self) -> None:
        failure: BaseException | None = None
        try:
            while True:
                item = self._queue.get()
                if item is _STOP:
                    break
                img, pts = item
                self._encode_one(img, pts)
                self.frames_written += 1
                self._last_written_pts = pts
                if self._file.out_of_space:
                    break  # finish the file in the space held back; frames still queued are not recorded
            self._mux_packets(self._stream.encode(None))
            self._container.close()
            if self.frames_written:
                self._file.commit()  # a recording shorter than one cluster is written now
        except Exception as exc:
            failure = exc
            with contextlib.suppress(Exception):
                self._container.close()
            if self._file.write_error is not None:
                # Drop the cluster/fragment the failed write cut off, so the file decodes to its end.
                with contextlib.suppress(OSError):
                    self._file.truncate(self._good_size)
        finally:
            with contextlib.suppress(Exception):
                self._file.close()
        if failure is not None or self._file.out_of_space:
            self._fail(failure)

    def _encode_one(self, img: np.ndarray, pts: int) -> None:
        """Encode and mux one ``(H, W, 3)`` uint8 BGR frame at ``pts`` (milliseconds)."""
        if img.shape[:2] != (self._enc_h, self._enc_w):
            img = img[: self._enc_h, : self._enc_w]
        # OpenCV's BGR -> I420 is exact on greys and ~5x faster than swscale's default path, whose rounding
        # darkens mid-tones by up to 4 levels. Layout: Y (H rows), then U and V (H/4 rows each) = yuv420p.
        yuv = cv2.cvtColor(img, cv2.COLOR_BGR2YUV_I420)  # (H * 3 / 2, W) uint8
        frame = av.VideoFrame.from_ndarray(yuv, format="yuv420p")
        frame.pts = pts
        frame.time_base = TIME_BASE
        self._mux_packets(self._stream.encode(frame))

    def _mux_packets(self, packets: Any) -> None:
        for packet in packets:
            self._container.mux(packet)
            # flush_packets: every finished cluster/fragment is now in the file, so its size is a clean cut.
            if self._file.size > self._header_size:
                self._file.commit()  # the first cluster is complete: the file appears, and opens
            if self._file.committed:
                self._good_size = self._file.size

    def _fail(self, exc: BaseException | None) -> None:
        """Account for a recording that stopped early: say once what the file really holds, or remove it."""
        if exc is None or (isinstance(exc, OSError) and exc.errno == errno.ENOSPC):
            why = "the disk is full"
        elif isinstance(exc, OSError) and exc.strerror:
            why = f"write failed: {exc.strerror}"
        else:
            why = f"{type(exc).__name__}: {exc}"
        frames, seconds = probe_recording(self.path, self.fps) if self._file.committed else (0, 0.0)
        if frames == 0 and self._file.committed:
            with contextlib.suppress(OSError):
                self.path.unlink()  # a file no player opens is no recording
        self.frames_written, self._saved_s = frames, seconds
        if frames > 1:
            kept = f"the first {frames} frames ({seconds:.{1 if seconds >= 1 else 2}f} s) are saved"
        elif frames == 1:
            kept = "only the first frame is saved"
        else:
            kept = "nothing was saved"
        # The owner reports it (raised from write/close, or on_error): logging it too would print it twice.
        log.debug("recording to %s stopped: %s", self.path, why)
        self._error = f"recording to {self.path} stopped: {why}; {kept}"
        # Unblock writers waiting for room; they see the error on their next check.
        with contextlib.suppress(queue.Empty):
            while True:
                self._queue.get_nowait()
        if self._on_error is not None:
            try:
                self._on_error(self._error)
            except Exception:
                log.exception("recorder on_error callback failed")


def probe_recording(path: Path, fps: float | None = None) -> tuple[int, float]:
    """The frames a recording holds and the seconds they span; ``(0, 0.0)`` if it does not open.

    Reads packet headers only, so it is quick even for a long file. The span is the timestamp span plus one
    frame (``1 / fps``, by default the stream's average rate), as :attr:`Recorder.duration` counts it.
    """
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            count, first, last = 0, None, None
            for packet in container.demux(stream):
                if packet.size == 0 or packet.pts is None:
                    continue  # the demuxer's end marker
                count += 1
                first = packet.pts if first is None else min(first, packet.pts)
                last = packet.pts if last is None else max(last, packet.pts)
            rate = fps or float(stream.average_rate or 30)
            tb = float(stream.time_base)
    except (av.FFmpegError, OSError, IndexError, EOFError):
        return 0, 0.0
    if count == 0:
        return 0, 0.0
    return count, (last - first) * tb + 1.0 / rate


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


# ---------------------------------------------------------------------------- snapshots
def save_snapshot(frame: np.ndarray, path_or_dir: str | os.PathLike[str], prefix: str = "stylecam") -> Path:
    """Save a frame as PNG, atomically (a temporary file renamed into place, so no half-written image).

    Args:
        frame: ``(H, W, 3)`` uint8 BGR (or ``(H, W)`` gray).
        path_or_dir: a ``.png`` file path, or an existing directory: then a unique name
            ``<prefix>-YYYYmmdd-HHMMSS-mmm.png`` (``-1``, ``-2``… added on collision) is made there.
        prefix: file name prefix in a directory.

    Returns:
        The written path.

    Raises:
        InputError: the directory is missing or not writable, or the frame is not an image.
        DeviceError: writing failed (e.g. disk full).
    """
    if not (isinstance(frame, np.ndarray) and frame.dtype == np.uint8 and frame.ndim in (2, 3)):
        got = f"{frame.shape} {frame.dtype}" if isinstance(frame, np.ndarray) else type(frame).__name__
        raise InputError(f"snapshot expects an (H, W, 3) uint8 BGR frame, got {got}")
    target = Path(os.fspath(path_or_dir)).expanduser()
    in_dir = target.is_dir()
    if in_dir:
        check_writable(target / "probe.png")
        target = _unique_name(target, prefix)
    else:
        if target.suffix.lower() != ".png":
            raise InputError(f"{target}: snapshots are PNG files; use a .png name or an existing directory")
        check_writable(target)
    ok, buf = cv2.imencode(".png", frame)
    if not ok:
        raise InputError(f"could not encode a {frame.shape} frame as PNG")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except PermissionError as exc:
        raise InputError(f"cannot write {target}: permission denied") from exc
    except OSError as exc:
        raise DeviceError(f"could not save snapshot {target}: {exc.strerror or exc}") from exc
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(buf.tobytes())
            f.flush()
            os.fsync(f.fileno())
        if in_dir:
            # link() fails if the name was taken meanwhile (another writer in the same millisecond): retry.
            while True:
                try:
                    os.link(tmp, target)
                    break
                except FileExistsError:
                    target = _unique_name(target.parent, prefix)
            os.unlink(tmp)
        else:
            os.replace(tmp, target)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        why = "the disk is full" if exc.errno == errno.ENOSPC else (exc.strerror or str(exc))
        raise DeviceError(f"could not save snapshot {target}: {why}") from exc
    return target


def free_path(directory: Path, stem: str, suffix: str, first: int = 1) -> Path:
    """``directory/stem+suffix``, or ``stem-N+suffix`` (N from ``first``) when that name is taken."""
    candidate = directory / f"{stem}{suffix}"
    n = first
    while candidate.exists():
        candidate = directory / f"{stem}-{n}{suffix}"
        n += 1
    return candidate


def _unique_name(directory: Path, prefix: str) -> Path:
    now = _dt.datetime.now()
    return free_path(directory, f"{prefix}-{now:%Y%m%d-%H%M%S}-{now.microsecond // 1000:03d}", ".png")


class SnapshotWriter:
    """Save snapshots into a directory without blocking the caller (PNG encoding a 1080p frame takes ~50 ms).

    Args:
        directory: where snapshots go; created if missing.
        prefix: file name prefix.
    """

    def __init__(self, directory: str | os.PathLike[str], prefix: str = "stylecam") -> None:
        self.directory = Path(os.fspath(directory)).expanduser()
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(f"cannot create snapshot directory {self.directory}: {exc.strerror or exc}") from exc
        check_writable(self.directory / "probe.png")
        self.prefix = prefix
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="snapshot")

    def save(self, frame: np.ndarray) -> Path:
        """Save now and return the path (blocks for the encode)."""
        return save_snapshot(frame, self.directory, self.prefix)

    def submit(self, frame: np.ndarray) -> concurrent.futures.Future[Path]:
        """Save in the background; the future gives the path or raises the error. ``frame`` is copied."""
        return self._pool.submit(save_snapshot, np.array(frame, copy=True), self.directory, self.prefix)

    def close(self) -> None:
        """Wait for pending snapshots and stop the worker."""
        self._pool.shutdown(wait=True)

    def __enter__(self) -> SnapshotWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
