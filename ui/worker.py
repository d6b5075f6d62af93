"""The pipeline worker: a ``QObject`` living in its own ``QThread`` that runs the live loop.

Frame flow: the source's capture thread fills a one-frame slot → the worker takes the newest
frame, runs ``Pipeline.process`` and feeds the sinks (recorder, virtual camera, snapshot) →
the UI thread receives the finished frame and only paints it.

Every control (style, strength, regions, recording, …) is a slot; the window reaches them
through queued signals, so they run in the worker's thread *between* frames and the pipeline
is only ever touched from one thread. The loop is a zero-interval ``QTimer`` so the thread's
event loop delivers those signals after each frame.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
from PyQt6.QtCore import QObject, QTimer, pyqtSignal, pyqtSlot

from realtime.errors import StylecamError

from .virtualcam import VirtualCamera

log = logging.getLogger("stylecam.ui")

READ_TIMEOUT_S = 0.05  # longest a control change waits while no frame arrives
MAX_CONSECUTIVE_ERRORS = 5  # stop the loop instead of showing the same failure at video rate


@dataclass(frozen=True)
class SourceRequest:
    """What to capture from.

    Attributes:
        spec: camera index as text, a video or an image path; ``None`` means "the first camera,
            or the bundled demo clip when there is none".
        size: ``(width, height)`` asked of a camera, or the size files are resized to.
        fps: rate asked of a camera or used to pace a file.
        loop: restart a video file at its end (a still image always repeats).
    """

    spec: str | None = None
    size: tuple[int, int] | None = None
    fps: float | None = None
    loop: bool = False


@dataclass(frozen=True)
class RecordingInfo:
    """A recording in progress, as the status bar shows it."""

    path: str
    seconds: float
    bytes: int
    frames: int
    behind: bool


@dataclass(frozen=True)
class FrameInfo:
    """What comes with each finished frame to the UI."""

    stats: object  # realtime.pipeline.FrameStats
    index: int
    dropped: int
    latency_ms: float  # capture → finished
    recording: RecordingInfo | None
    guide: str | None = None  # what steers a guided style now (None: not a guided style)


def _open_source(req: SourceRequest):
    from realtime.sources import open_source

    # loop=None lets the source choose for itself: a still image repeats, a video plays once.
    return open_source(req.spec if req.spec is not None else "0", size=req.size, fps=req.fps,
                       loop=True if req.loop else None)


def _demo_clip() -> Path:
    from realtime.demo import DEMO_CLIP

    return Path(DEMO_CLIP)


def _new_recorder(path: Path, width: int, height: int, fps: float):
    from realtime.sinks import Recorder

    return Recorder(path, width, height, fps)


def _save_snapshot(frame: np.ndarray, directory: Path) -> Path:
    from realtime.sinks import save_snapshot

    directory.mkdir(parents=True, exist_ok=True)
    return Path(save_snapshot(frame, directory))


def recording_path(directory: Path, now: datetime | None = None) -> Path:
    """``<directory>/stylecam-YYYYmmdd-HHMMSS.mkv``, numbered when that name is taken."""
    from realtime.sinks import free_path

    stamp = (now or datetime.now()).strftime("%Y%m%d-%H%M%S")
    return free_path(directory, f"stylecam-{stamp}", ".mkv", first=2)


class PipelineWorker(QObject):
    """Owns the frame source, the pipeline and the sinks; lives in a ``QThread``.

    Args:
        pipeline: a ready ``realtime.pipeline.Pipeline``; from :meth:`start` on, only this
            worker's thread touches it.
        source: what to capture from.
    """

    frameReady = pyqtSignal(object, object)  # (H, W, 3) uint8 BGR the UI now owns, FrameInfo
    sourceOpened = pyqtSignal(str, bool)  # description, True when it is the demo fallback
    notice = pyqtSignal(str)  # passing information ("" clears)
    error = pyqtSignal(str)  # something the user should act on
    styleChanged = pyqtSignal(str)  # style key now shown
    recordingStarted = pyqtSignal(str)  # path
    recordingStopped = pyqtSignal(str, str)  # path, one-line summary ("" path: nothing written)
    snapshotSaved = pyqtSignal(str)
    virtualCameraChanged = pyqtSignal(bool, str)  # on, device or reason
    pausedChanged = pyqtSignal(bool)
    stopped = pyqtSignal()

    def __init__(self, pipeline, source: SourceRequest):
        super().__init__()
        self._pipeline = pipeline
        self._request = source
        self._source = None
        self._timer: QTimer | None = None
        self._paused = False
        self._recorder = None
        self._record_dir: Path | None = None
        self._recorder_size: tuple[int, int] | None = None
        self._snapshot_dir: Path | None = None
        self._vcam: VirtualCamera | None = None
        self._vcam_wanted = False
        self._last_input = None  # newest source Frame, re-processed on control changes while paused
        self._last_out: np.ndarray | None = None
        self._errors = 0
        self._source_state = "ok"
        # Set while the UI still has a frame to paint: the worker then skips handing it more,
        # so a slow window never builds a queue of frames (it shows the newest one instead).
        self._ui_busy = threading.Event()
        self.frames_processed = 0

    # ------------------------------------------------------------------ lifecycle
    @pyqtSlot()
    def start(self) -> None:
        """Open the source (falling back to the demo clip) and start the loop."""
        self._timer = QTimer(self)
        self._timer.setInterval(0)
        self._timer.timeout.connect(self._step)
        if self._open(self._request, fallback=True):
            self._timer.start()
        self.styleChanged.emit(self._style_key())

    @pyqtSlot()
    def stop(self) -> None:
        """Stop the loop, finish a recording, close the virtual camera and the source, then end the thread."""
        if self._timer is not None:
            self._timer.stop()
        self._finish_recording()
        self._close_vcam()
        if self._source is not None:
            self._source.close()
            self._source = None
        try:
            self._pipeline.close()
        except Exception:  # shutting down: report, but keep going
            log.exception("closing the pipeline failed")
        self.stopped.emit()
        thread = self.thread()
        if thread is not None:
            thread.quit()

    def frame_consumed(self) -> None:
        """Called by the UI (any thread) once it has taken the last frame it was given."""
        self._ui_busy.clear()

    # ------------------------------------------------------------------ source
    def _open(self, req: SourceRequest, fallback: bool) -> bool:
        """Open ``req``; when it fails and ``fallback``, loop the demo clip instead, saying why."""
        try:
            src = _open_source(req)
        except StylecamError as e:
            if not fallback:
                self.error.emit(str(e))
                return False
            is_camera = req.spec is None or req.spec.strip().isdigit() or req.spec.startswith("/dev/video")
            try:
                demo = _demo_clip()
                src = _open_source(SourceRequest(str(demo), req.size, None, loop=True))
            except (StylecamError, ImportError) as e2:
                message = f"{e}; the demo clip cannot be played either ({e2})"
                self.error.emit(message)
                self.notice.emit(message)  # stays after the error fades: the window has nothing else to show
                return False
            self._swap_source(src)
            self.sourceOpened.emit(f"demo clip ({src.width}×{src.height})", True)
            if is_camera:
                self.notice.emit(f"No camera: {e}. Showing the demo clip — pick a camera in the Camera panel.")
            else:
                self.notice.emit(f"Cannot play the source: {e}. Showing the demo clip — pick a source in the "
                                 "Camera panel.")
            return True
        self._swap_source(src)
        self.sourceOpened.emit(f"{src.name} ({src.width}×{src.height} @ {src.fps:.3g} fps)", False)
        self.notice.emit("")
        return True

    def _swap_source(self, src) -> None:
        old, self._source = self._source, src
        self._source_state = "ok"
        if old is not None:
            old.close()
        if self._recorder is not None and (src.width, src.height) != self._recorder_size:
            # A recording keeps one frame size; a new size starts a new file.
            self._finish_recording()
            self.notice.emit("The recording was finished because the frame size changed; press R to record again.")
        if self._vcam is not None and (src.width, src.height) != (self._vcam.width, self._vcam.height):
            self._close_vcam()
            self._vcam_wanted = True  # re-opened at the new size with the next frame

    @pyqtSlot(object)
    def setSource(self, req: SourceRequest) -> None:  # noqa: N802 (Qt slot style)
        """Switch to another camera or file; on failure keep the current source."""
        if self._open(req, fallback=False) and self._timer is not None and not self._paused:
            self._timer.start()

    # ------------------------------------------------------------------ the loop
    def _step(self) -> None:
        src = self._source
        if src is None:
            return
        frame = src.read(timeout=READ_TIMEOUT_S)
        if frame is None:
            self._check_source(src)
            return
        if self._source_state != "ok":
            self._source_state = "ok"
            self.notice.emit("")
        self._last_input = frame
        self._process(frame, sinks=True)

    def _check_source(self, src) -> None:
        state = src.state
        if state == self._source_state:
            return
        self._source_state = state
        if state == "reconnecting":
            self.notice.emit(f"{src.message or 'Camera lost'} — plug it back in; the view resumes by itself.")
        elif state == "error":
            self.error.emit(f"{src.error or src.message}. Pick another source in the Camera panel.")
        elif state == "ended":
            self._finish_recording()
            self.notice.emit(f"{src.name} ended. Pick a source in the Camera panel (or use --loop).")
            if self._timer is not None:
                self._timer.stop()

    def _process(self, frame, sinks: bool) -> None:
        try:
            out, stats = self._pipeline.process(frame.image, frame.t_capture)
        except Exception as e:  # show it in the window; a traceback helps only in the log
            self._errors += 1
            log.exception("processing a frame failed")
            msg = str(e) if isinstance(e, StylecamError) else f"processing failed: {type(e).__name__}: {e}"
            if self._errors >= MAX_CONSECUTIVE_ERRORS and self._timer is not None:
                self._timer.stop()
                msg += " — stopped; fix the settings or restart stylecam"
            self.error.emit(msg)
            return
        self._errors = 0
        self.frames_processed += 1
        # The pipeline may reuse its output buffer (pinned host memory on CUDA): one copy, then
        # the sinks and the UI share it read-only.
        out = np.array(out, copy=True)
        self._last_out = out
        if sinks:
            self._feed_sinks(out, frame.t_capture)
        if not self._ui_busy.is_set():
            self._ui_busy.set()
            info = FrameInfo(stats=stats, index=frame.index, dropped=self._source.dropped if self._source else 0,
                             latency_ms=(time.perf_counter() - frame.t_capture) * 1000.0,
                             recording=self._recording_info(), guide=self._guide_text())
            self.frameReady.emit(out, info)

    def _guide_text(self) -> str | None:
        fn = getattr(self._pipeline, "guide_text", None)
        return fn() if fn is not None else None

    def _feed_sinks(self, out: np.ndarray, t_capture: float) -> None:
        if self._record_dir is not None and self._recorder is None:
            self._open_recorder(out)
        if self._recorder is not None:
            try:
                self._recorder.write(out, t_capture, copy=False)
            except StylecamError as e:
                self.error.emit(str(e))  # names the file, why, and what it holds
                self._finish_recording()
        if self._vcam_wanted and self._vcam is None:
            self._open_vcam(out)
        if self._vcam is not None:
            try:
                self._vcam.send(out)
            except Exception as e:  # the loopback device can vanish (module unloaded)
                self._close_vcam(f"virtual camera stopped: {e}")
        if self._snapshot_dir is not None:
            directory, self._snapshot_dir = self._snapshot_dir, None
            try:
                self.snapshotSaved.emit(str(_save_snapshot(out, directory)))
            except (StylecamError, OSError) as e:
                self.error.emit(f"snapshot not saved: {e}")

    def _refresh_if_paused(self) -> None:
        """While paused, show the effect of a control change on the frozen frame."""
        if self._paused and self._last_input is not None:
            self._process(self._last_input, sinks=False)

    # ------------------------------------------------------------------ controls
    def _style_key(self) -> str:
        style = getattr(self._pipeline, "style", None)
        return style.key if style is not None else ""

    def _apply(self, what: str, fn, *args) -> None:
        try:
            fn(*args)
        except StylecamError as e:
            self.error.emit(str(e))
            return
        except Exception as e:  # a bad control value must never end the loop
            log.exception("%s failed", what)
            self.error.emit(f"{what} failed: {type(e).__name__}: {e}")
            return
        self._refresh_if_paused()

    @pyqtSlot(str)
    def setStyle(self, key: str) -> None:  # noqa: N802
        self._apply("changing the style", self._pipeline.set_style, key, True)
        self.styleChanged.emit(self._style_key())

    @pyqtSlot(int)
    def stepStyle(self, delta: int) -> None:  # noqa: N802
        """Move ``delta`` places in the gallery order (wrapping)."""
        styles = self._pipeline.registry.styles
        if not styles:
            return
        keys = [s.key for s in styles]
        cur = self._style_key()
        i = keys.index(cur) if cur in keys else -delta
        self.setStyle(keys[(i + delta) % len(keys)])

    @pyqtSlot(float)
    def setStrength(self, value: float) -> None:  # noqa: N802
        self._apply("changing the strength", self._pipeline.set_strength, float(value))

    @pyqtSlot(str)
    def setPreset(self, name: str) -> None:  # noqa: N802
        self._apply("changing the region preset", self._pipeline.set_preset, name)

    @pyqtSlot(str, str)
    def setRegions(self, person: str, background: str) -> None:  # noqa: N802
        from realtime.composite import Treatment

        def apply() -> None:
            self._pipeline.set_regions(Treatment.parse(person, "person"),
                                       Treatment.parse(background, "background"))

        self._apply("changing the regions", apply)

    @pyqtSlot(bool)
    def setMirror(self, on: bool) -> None:  # noqa: N802
        self._apply("mirroring", self._pipeline.set_mirror, bool(on))

    @pyqtSlot(bool)
    def setPaused(self, paused: bool) -> None:  # noqa: N802
        self._paused = paused
        if self._timer is not None and self._source is not None:
            if paused:
                self._timer.stop()
            else:
                self._timer.start()
        self.pausedChanged.emit(paused)

    @pyqtSlot(str)
    def snapshot(self, directory: str) -> None:
        """Save the next finished frame (or, while paused, the frame on screen) as a PNG in ``directory``."""
        self._snapshot_dir = Path(directory)
        if self._paused and self._last_out is not None:
            self._feed_snapshot_only()

    def _feed_snapshot_only(self) -> None:
        directory, self._snapshot_dir = self._snapshot_dir, None
        try:
            self.snapshotSaved.emit(str(_save_snapshot(self._last_out, directory)))
        except (StylecamError, OSError) as e:
            self.error.emit(f"snapshot not saved: {e}")

    # ------------------------------------------------------------------ recording
    @pyqtSlot(str)
    def startRecording(self, directory: str) -> None:  # noqa: N802
        """Record every finished frame from the next one on into a new file in ``directory``."""
        if self._record_dir is not None:
            return
        self._record_dir = Path(directory)

    @pyqtSlot()
    def stopRecording(self) -> None:  # noqa: N802
        self._finish_recording()

    def _open_recorder(self, out: np.ndarray) -> None:
        directory = self._record_dir
        problem = None
        if directory.exists() and not directory.is_dir():
            problem = "it is a file, not a folder"
        else:
            try:
                directory.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                problem = e.strerror or str(e)
        if problem:
            self._record_dir = None
            self.recordingStopped.emit("", "")
            self.error.emit(f"cannot record into {directory}: {problem}. Choose another output folder.")
            return
        path = recording_path(directory)
        fps = float(self._source.fps) if self._source is not None and self._source.fps else 30.0
        h, w = out.shape[:2]
        try:
            self._recorder = _new_recorder(path, w, h, fps)
        except (StylecamError, OSError) as e:
            self._record_dir = None
            self.recordingStopped.emit("", "")
            self.error.emit(f"cannot record: {e}")
            return
        self._recorder_size = (w, h)
        self.recordingStarted.emit(str(path))

    def _recording_info(self) -> RecordingInfo | None:
        rec = self._recorder
        if rec is None:
            return None
        return RecordingInfo(path=str(rec.path), seconds=rec.duration, bytes=rec.bytes_written,
                             frames=rec.frames_in, behind=rec.behind)

    def _finish_recording(self) -> None:
        """Close the recorder (flushes the queue and the container); safe when not recording."""
        self._record_dir = None
        rec, self._recorder = self._recorder, None
        if rec is None:
            return
        path = rec.path
        try:
            rec.close()
        except (StylecamError, OSError) as e:
            self.error.emit(str(e))
        if not path.exists():  # stopped before anything decodable was written; the error said so
            self.recordingStopped.emit("", "")
            return
        summary = f"{rec.frames_written} frames, {rec.duration:.1f} s, {rec.bytes_written / 1e6:.1f} MB"
        log.info("recording saved: %s (%s)", path, summary)
        self.recordingStopped.emit(str(path), summary)

    # ------------------------------------------------------------------ virtual camera
    @pyqtSlot(bool)
    def setVirtualCamera(self, on: bool) -> None:  # noqa: N802
        """Turn the virtual camera on (opened with the next frame, at its size) or off."""
        self._vcam_wanted = on
        if not on:
            self._close_vcam()
        elif self._paused and self._last_out is not None:
            self._open_vcam(self._last_out)

    def _open_vcam(self, out: np.ndarray) -> None:
        h, w = out.shape[:2]
        fps = float(self._source.fps) if self._source is not None and self._source.fps else 30.0
        try:
            self._vcam = VirtualCamera(w, h, fps)
        except StylecamError as e:
            self._vcam_wanted = False
            self.virtualCameraChanged.emit(False, str(e))
            return
        self.virtualCameraChanged.emit(True, self._vcam.device)

    def _close_vcam(self, reason: str = "") -> None:
        self._vcam_wanted = False
        cam, self._vcam = self._vcam, None
        if cam is not None:
            try:
                cam.close()
            except Exception:  # closing a vanished device
                log.exception("closing the virtual camera failed")
            self.virtualCameraChanged.emit(False, reason)
