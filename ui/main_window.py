"""The main window: live view, style gallery, region / camera / output controls and the status bar.

The window only paints and forwards what the user asks for: every control is a signal to the
:class:`~ui.worker.PipelineWorker` in its own thread (see ``ui/worker.py``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from pathlib import Path

import numpy as np
from PyQt6.QtCore import Qt, QThread, QTimer, pyqtSignal
from PyQt6.QtGui import QAction, QCloseEvent, QKeySequence
from PyQt6.QtWidgets import (
    QCheckBox,
    QDockWidget,
    QFileDialog,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QPushButton,
    QScrollArea,
    QSlider,
    QVBoxLayout,
    QWidget,
)

from realtime.composite import PRESETS
from realtime.errors import StylecamError

from .controls import CameraControls, RegionControls
from .gallery import StyleGallery
from .hotkeys import HOTKEYS, STRENGTH_STEP
from .settings import AppSettings, default_output_dir
from .view import VideoView
from .worker import FrameInfo, PipelineWorker, SourceRequest

log = logging.getLogger("stylecam.ui")

STATUS_INTERVAL_S = 0.25  # status-bar text changes relayout the bar: 4 Hz is plenty to read
SHUTDOWN_WAIT_MS = 20_000  # finishing a long recording's queue can take a few seconds
ERROR_SHOWN_MS = 10_000


def _demo_clip() -> Path | None:
    try:
        from realtime.demo import DEMO_CLIP
    except ImportError:
        return None
    return Path(DEMO_CLIP) if Path(DEMO_CLIP).is_file() else None


def format_duration(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60:02d}:{s % 60:02d}"


class MainWindow(QMainWindow):
    """The stylecam window.

    Args:
        pipeline: a ready ``realtime.pipeline.Pipeline``; the window applies the saved settings
            to it, then hands it to the worker thread and never touches it again.
        source: what to capture from.
        settings: where choices are remembered.
        output_dir: where recordings and snapshots go (``None``: the saved one or the default).
        explicit: names of options given on the command line (``style``, ``person``,
            ``background``, ``preset``, ``strength``, ``mirror``, ``source``); they win over saved settings.
    """

    # Controls for the worker (queued to its thread; see PipelineWorker's slots).
    _styleRequested = pyqtSignal(str)
    _styleStep = pyqtSignal(int)
    _strengthRequested = pyqtSignal(float)
    _presetRequested = pyqtSignal(str)
    _regionsRequested = pyqtSignal(str, str)
    _mirrorRequested = pyqtSignal(bool)
    _pauseRequested = pyqtSignal(bool)
    _recordStart = pyqtSignal(str)
    _recordStop = pyqtSignal()
    _snapshotRequested = pyqtSignal(str)
    _vcamRequested = pyqtSignal(bool)
    _sourceRequested = pyqtSignal(object)
    _stopRequested = pyqtSignal()
    _camerasFound = pyqtSignal(list)
    errorReported = pyqtSignal(str)  # from any thread; shown like the worker's errors

    def __init__(self, pipeline, source: SourceRequest, settings: AppSettings,
                 output_dir: Path | None = None, explicit: frozenset[str] = frozenset()):
        super().__init__()
        self.setWindowTitle("stylecam")
        self.settings = settings
        self.output_dir = Path(output_dir or settings.output_dir or default_output_dir())
        # A folder given on the command line is for this run; one picked in the window is remembered.
        self._remember_output_dir = output_dir is None
        self.styles = list(pipeline.registry.styles)
        self.style_key = pipeline.style.key if pipeline.style else ""
        self.recording_path: str | None = None
        self.last_recording: str | None = None
        self.last_snapshot: str | None = None
        self.paused = False
        self._shut_down = False
        self._paint_times: deque[float] = deque(maxlen=60)
        self._status_t = 0.0
        self._record_pending = False
        self.last_info: FrameInfo | None = None
        self._error_timer = QTimer(self, singleShot=True, interval=ERROR_SHOWN_MS)
        self._error_timer.timeout.connect(self._restore_notice)
        self._notice = ""

        strength, mirror, preset, regions = self._restore_pipeline_state(pipeline, explicit)
        self._build(pipeline, strength, mirror, preset, regions)
        self._bind_hotkeys()
        self._restore_window()

        self._thread = QThread(self)
        self._thread.setObjectName("pipeline")
        self.worker = PipelineWorker(pipeline, self._initial_source(source, explicit))
        self.worker.moveToThread(self._thread)
        self._connect_worker()
        self._thread.started.connect(self.worker.start)
        self._camerasFound.connect(self.cameras.set_cameras)
        self.errorReported.connect(self.show_error)

    # ------------------------------------------------------------------ construction
    def _restore_pipeline_state(self, pipeline, explicit):
        """Apply saved choices to the pipeline while this thread still owns it."""
        s = self.settings
        if "style" not in explicit and s.style:
            try:
                pipeline.set_style(s.style, crossfade=False)
            except StylecamError:  # a pack that was removed since: keep the default style
                log.info("saved style %s is no longer installed", s.style)
        self.style_key = pipeline.style.key if pipeline.style else ""
        preset = s.preset if s.preset in PRESETS else None
        if not ({"person", "background", "preset"} & explicit):
            try:
                if preset:
                    pipeline.set_preset(preset)
                elif s.person and s.background:
                    from realtime.composite import Treatment

                    pipeline.set_regions(Treatment.parse(s.person), Treatment.parse(s.background))
            except StylecamError:  # e.g. a background image that was deleted since
                log.info("saved regions %s / %s no longer apply", s.person, s.background)
        else:
            preset = None
        if "strength" not in explicit and s.strength is not None:
            pipeline.set_strength(s.strength)
        if "mirror" not in explicit and s.mirror is not None:
            pipeline.set_mirror(s.mirror)
        regions = (str(pipeline.person), str(pipeline.background))
        if preset is None:
            preset = next((n for n, (p, b) in PRESETS.items() if (str(p), str(b)) == regions), None)
        return pipeline.strength, pipeline.mirror, preset, regions

    def _initial_source(self, source: SourceRequest, explicit) -> SourceRequest:
        if "source" in explicit or self.settings.camera is None:
            return source
        return SourceRequest(self.settings.camera, self.settings.camera_size or source.size,
                             self.settings.camera_fps or source.fps, source.loop)

    def _build(self, pipeline, strength: float, mirror: bool, preset: str | None, regions) -> None:
        self.view = VideoView()
        self.setCentralWidget(self.view)

        panel = QWidget()
        col = QVBoxLayout(panel)
        col.setContentsMargins(6, 6, 6, 6)
        self._build_styles(col)
        self._build_strength(col, strength)
        self._build_regions(col, preset, regions)
        self._build_cameras(col)
        col.addWidget(self._build_output(mirror))
        col.addStretch(1)
        self._build_dock(panel)
        self._build_status_bar(pipeline)
        self.resize(1180, 720)
        self.view.setFocus()

    def _build_styles(self, col: QVBoxLayout) -> None:
        self.gallery = StyleGallery(self.styles)
        self.gallery.select_key(self.style_key)
        self.gallery.styleChosen.connect(self.set_style)
        col.addWidget(QLabel("<b>Styles</b> — keys 1–9, 0; ← → to step"))
        col.addWidget(self.gallery)
        if not self.styles:
            col.addWidget(QLabel("No styles installed: add a pack with --styles DIR."))

    def _build_strength(self, col: QVBoxLayout, strength: float) -> None:
        strength_row = QHBoxLayout()
        self.strength = QSlider(Qt.Orientation.Horizontal)
        self.strength.setRange(0, 100)
        self.strength.setValue(int(round(strength * 100)))
        self.strength.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.strength.setToolTip("How much of the style to show (+ / −)")
        self.strength_label = QLabel(f"{strength:.0%}")
        self.strength_label.setMinimumWidth(40)
        self.strength.valueChanged.connect(self._on_strength_slider)
        strength_row.addWidget(QLabel("Strength"))
        strength_row.addWidget(self.strength, 1)
        strength_row.addWidget(self.strength_label)
        col.addLayout(strength_row)

    def _build_regions(self, col: QVBoxLayout, preset: str | None, regions) -> None:
        self.regions = RegionControls(list(PRESETS))
        self.regions.show_regions(regions[0], regions[1], preset)
        self.regions.presetChosen.connect(self.set_preset)
        self.regions.regionsChanged.connect(self._on_regions)
        col.addWidget(self.regions)

    def _build_cameras(self, col: QVBoxLayout) -> None:
        self.cameras = CameraControls(_demo_clip())
        self.cameras.select(self.settings.camera, self.settings.camera_size, self.settings.camera_fps)
        self.cameras.sourceChosen.connect(self._choose_source)
        self.cameras.refreshRequested.connect(self.refresh_cameras)
        col.addWidget(self.cameras)

    def _build_output(self, mirror: bool) -> QGroupBox:
        out_box = QGroupBox("Output")
        out = QVBoxLayout(out_box)
        buttons = QHBoxLayout()
        self.record_button = QPushButton("● Record (R)")
        self.record_button.setCheckable(True)
        self.record_button.clicked.connect(self.set_recording)
        self.snapshot_button = QPushButton("Snapshot (S)")
        self.snapshot_button.clicked.connect(self.snapshot)
        buttons.addWidget(self.record_button)
        buttons.addWidget(self.snapshot_button)
        out.addLayout(buttons)
        toggles = QHBoxLayout()
        self.mirror_box = QCheckBox("Mirror (M)")
        self.mirror_box.setChecked(mirror)
        self.mirror_box.toggled.connect(self.set_mirror)
        self.vcam_box = QCheckBox("Virtual camera (V)")
        self.vcam_box.toggled.connect(self._on_vcam_box)
        self.pause_box = QCheckBox("Pause")
        self.pause_box.toggled.connect(self.set_paused)
        toggles.addWidget(self.mirror_box)
        toggles.addWidget(self.vcam_box)
        toggles.addWidget(self.pause_box)
        out.addLayout(toggles)
        dir_row = QHBoxLayout()
        self.dir_label = QLabel()
        self.dir_label.setWordWrap(True)
        self._show_output_dir()
        change = QPushButton("Folder…")
        change.clicked.connect(self._pick_output_dir)
        dir_row.addWidget(self.dir_label, 1)
        dir_row.addWidget(change)
        out.addLayout(dir_row)
        self.last_file_label = QLabel("")
        self.last_file_label.setWordWrap(True)
        self.last_file_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        out.addWidget(self.last_file_label)
        help_button = QPushButton("Keyboard shortcuts (H)")
        help_button.clicked.connect(self.toggle_help)
        out.addWidget(help_button)
        for w in (self.record_button, self.snapshot_button, self.mirror_box, self.vcam_box, self.pause_box,
                  change, help_button):
            w.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        return out_box

    def _build_dock(self, panel: QWidget) -> None:
        scroll = QScrollArea()
        scroll.setWidget(panel)
        scroll.setWidgetResizable(True)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.dock = QDockWidget("Controls", self)
        self.dock.setObjectName("controls")
        self.dock.setWidget(scroll)
        self.dock.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetMovable
                              | QDockWidget.DockWidgetFeature.DockWidgetFloatable)
        self.dock.setMinimumWidth(330)
        self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self.dock)

    def _build_status_bar(self, pipeline) -> None:
        sb = self.statusBar()
        why = pipeline.backend_reason or ""
        self.backend_label = QLabel(f"<b>{pipeline.backend}</b>" + (f" — {why}" if why else ""))
        self.backend_label.setToolTip(f"Backend: {pipeline.backend}. {why}")
        self.fps_label = QLabel("— fps")
        self.stage_label = QLabel("")
        self.dropped_label = QLabel("")
        self.guide_label = QLabel("")
        self._guide_text: str | None = None
        self.rec_label = QLabel("")
        self.rec_label.setStyleSheet("color: #d22; font-weight: bold;")
        sb.addWidget(self.backend_label, 1)  # temporary messages cover it for a few seconds
        for w in (self.rec_label, self.guide_label, self.fps_label, self.stage_label, self.dropped_label):
            sb.addPermanentWidget(w)
        log.info("backend: %s (%s)", pipeline.backend, pipeline.backend_reason)

    def _bind_hotkeys(self) -> None:
        # Bound methods only: PyQt drops those connections with the window, lambdas would keep it alive.
        handlers = {
            "style-prev": self.previous_style,
            "style-next": self.next_style,
            "pause": self.toggle_pause,
            "record": self.toggle_recording,
            "snapshot": self.snapshot,
            "preset": self.next_preset,
            "strength-up": self.more_strength,
            "strength-down": self.less_strength,
            "fullscreen": self.toggle_fullscreen,
            "mirror": self.mirror_box.toggle,
            "virtualcam": self.vcam_box.toggle,
            "help": self.toggle_help,
            "escape": self.escape,
            "quit": self.close,
        }
        self.actions_by_command: dict[str, QAction] = {}
        for hk in HOTKEYS:
            if hk.command == "style-n":
                for n, key in enumerate(hk.keys):
                    act = QAction(f"Style {key}", self)
                    act.setShortcut(QKeySequence(key))
                    act.setData(n)
                    act.triggered.connect(self._on_style_number_action)
                    self.addAction(act)
                continue
            act = QAction(hk.help, self)
            act.setShortcuts([QKeySequence(k) for k in hk.keys])
            act.triggered.connect(handlers[hk.command])
            self.addAction(act)  # window-wide: works in fullscreen with the panel hidden
            self.actions_by_command[hk.command] = act

    def _restore_window(self) -> None:
        if self.settings.geometry is not None:
            self.restoreGeometry(self.settings.geometry)
        if self.settings.window_state is not None:
            self.restoreState(self.settings.window_state)

    def _connect_worker(self) -> None:
        w = self.worker
        self._styleRequested.connect(w.setStyle)
        self._styleStep.connect(w.stepStyle)
        self._strengthRequested.connect(w.setStrength)
        self._presetRequested.connect(w.setPreset)
        self._regionsRequested.connect(w.setRegions)
        self._mirrorRequested.connect(w.setMirror)
        self._pauseRequested.connect(w.setPaused)
        self._recordStart.connect(w.startRecording)
        self._recordStop.connect(w.stopRecording)
        self._snapshotRequested.connect(w.snapshot)
        self._vcamRequested.connect(w.setVirtualCamera)
        self._sourceRequested.connect(w.setSource)
        self._stopRequested.connect(w.stop)
        w.frameReady.connect(self._on_frame)
        w.sourceOpened.connect(self._on_source_opened)
        w.notice.connect(self._on_notice)
        w.error.connect(self.show_error)
        w.styleChanged.connect(self._on_style_changed)
        w.recordingStarted.connect(self._on_recording_started)
        w.recordingStopped.connect(self._on_recording_stopped)
        w.snapshotSaved.connect(self._on_snapshot)
        w.virtualCameraChanged.connect(self._on_vcam_changed)

    # ------------------------------------------------------------------ running
    def start(self) -> None:
        """Start the pipeline thread and look for cameras in the background."""
        self._thread.start()
        self.refresh_cameras()

    def refresh_cameras(self) -> None:
        """List cameras off the UI thread (probing a wedged driver can take seconds)."""
        def probe() -> None:
            try:
                from realtime.sources import list_cameras

                found = list_cameras()
            except Exception:  # listing is best effort; the demo clip stays available
                log.exception("listing cameras failed")
                found = []
            self._camerasFound.emit(found)

        threading.Thread(target=probe, name="list-cameras", daemon=True).start()

    def shutdown(self) -> None:
        """Stop the worker (it finishes a recording, closes capture), then wait for its thread."""
        if self._shut_down:
            return
        self._shut_down = True
        self._error_timer.stop()
        self._save_settings()
        if self._thread.isRunning():
            self._stopRequested.emit()
            if not self._thread.wait(SHUTDOWN_WAIT_MS):
                log.error("the pipeline thread did not stop within %d s", SHUTDOWN_WAIT_MS // 1000)

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 (Qt API)
        self.shutdown()
        super().closeEvent(event)

    def _save_settings(self) -> None:
        s = self.settings
        s.style = self.style_key or None
        s.preset = self.regions.current_preset()
        s.person, s.background = self.regions.current()
        s.strength = self.strength.value() / 100.0
        s.mirror = self.mirror_box.isChecked()
        if self._remember_output_dir:
            s.output_dir = self.output_dir
        s.geometry = self.saveGeometry()
        s.window_state = self.saveState()
        s.sync()

    # ------------------------------------------------------------------ frames and status
    def _on_frame(self, frame: np.ndarray, info: FrameInfo) -> None:
        self.worker.frame_consumed()
        if not self.isVisible() or self.isMinimized():
            return  # nothing to paint; the worker keeps recording
        self.view.show_frame(frame)
        now = time.perf_counter()
        self._paint_times.append(now)
        self.last_info = info
        if now - self._status_t >= STATUS_INTERVAL_S:
            self._status_t = now
            self._update_status(info, now)

    def _update_status(self, info: FrameInfo, now: float) -> None:
        times = self._paint_times
        if len(times) >= 2 and times[-1] > times[0]:
            self.fps_label.setText(f"{(len(times) - 1) / (times[-1] - times[0]):.1f} fps")
        st = info.stats
        self.stage_label.setText(
            f"prep {st.prepare_ms:.1f} · seg {st.segment_ms:.1f} · style {st.stylize_ms:.1f} · "
            f"comp {st.composite_ms:.1f} = {st.total_ms:.1f} ms · latency {info.latency_ms:.0f} ms")
        self.stage_label.setToolTip("Milliseconds per frame: prepare, segmentation (overlaps stylization), "
                                    "stylization, compositing, total; latency is capture → on screen")
        self.dropped_label.setText(f"dropped {info.dropped}")
        self._show_guide(info.guide)
        rec = info.recording
        if rec is not None:
            text = f"● REC {format_duration(rec.seconds)} {rec.bytes / 1e6:.1f} MB"
            if rec.behind:
                text += " — encoder behind!"
            self.rec_label.setText(text)
            self.rec_label.setToolTip(rec.path)

    def _show_guide(self, text: str | None) -> None:
        """What steers a guided style, in the status bar and its gallery tooltip (logged when it changes)."""
        if text == self._guide_text:
            return
        self._guide_text = text
        self.guide_label.setText(text or "")
        self.guide_label.setToolTip("A guided style: its teacher looks at small keyframes in the background "
                                    "and a colour map fitted to its answer steers every frame"
                                    + ("; the default map runs until the teacher answers" if text and
                                       "default map" in text else "") if text else "")
        style = next((s for s in self.styles if s.key == self.style_key), None)
        if style is not None and style.guide is not None:
            self.gallery.set_guide_note(style, text)
        if text:
            log.info("%s", text)

    def _on_source_opened(self, description: str, is_demo: bool) -> None:
        self.cameras.current.setText(f"Showing: {description}")

    def _on_notice(self, text: str) -> None:
        self._notice = text
        if not self._error_timer.isActive():
            self.view.set_notice(text)

    def _restore_notice(self) -> None:
        self.view.set_notice(self._notice)

    def show_error(self, text: str) -> None:
        """Show ``text`` over the view (red) and in the status bar; it fades after a while."""
        log.error("%s", text)
        self.view.set_notice(text, error=True)
        self.statusBar().showMessage(text, ERROR_SHOWN_MS)
        self._error_timer.start()

    def _on_style_changed(self, key: str) -> None:
        self.style_key = key
        self.gallery.select_key(key)
        name = next((s.name for s in self.styles if s.key == key), key)
        self.setWindowTitle(f"stylecam — {name}" if name else "stylecam")

    # ------------------------------------------------------------------ actions
    def set_style(self, key: str) -> None:
        self._styleRequested.emit(key)

    def pick_style_number(self, n: int) -> None:
        """Hotkey ``n+1`` (``0`` is the tenth style)."""
        if n < len(self.styles):
            self.set_style(self.styles[n].key)

    def _on_style_number_action(self) -> None:
        self.pick_style_number(int(self.sender().data()))

    def step_style(self, delta: int) -> None:
        self._styleStep.emit(delta)

    def previous_style(self) -> None:
        self.step_style(-1)

    def next_style(self) -> None:
        self.step_style(1)

    def toggle_pause(self) -> None:
        self.set_paused(not self.paused)

    def toggle_recording(self) -> None:
        self.set_recording(self.recording_path is None and not self._record_pending)

    def more_strength(self) -> None:
        self.change_strength(STRENGTH_STEP)

    def less_strength(self) -> None:
        self.change_strength(-STRENGTH_STEP)

    def change_strength(self, delta: float) -> None:
        self.strength.setValue(self.strength.value() + int(round(delta * 100)))

    def _on_strength_slider(self, value: int) -> None:
        self.strength_label.setText(f"{value}%")
        self._strengthRequested.emit(value / 100.0)

    def set_preset(self, name: str) -> None:
        p, b = PRESETS[name]
        self.regions.show_regions(str(p), str(b), name)
        self._presetRequested.emit(name)

    def next_preset(self) -> None:
        names = list(PRESETS)
        cur = self.regions.current_preset()
        self.set_preset(names[(names.index(cur) + 1) % len(names)] if cur in names else names[0])

    def _on_regions(self, person: str, background: str) -> None:
        self._regionsRequested.emit(person, background)

    def set_mirror(self, on: bool) -> None:
        if self.mirror_box.isChecked() != on:
            self.mirror_box.setChecked(on)  # re-enters through toggled
            return
        self._mirrorRequested.emit(on)

    def set_paused(self, paused: bool) -> None:
        if self.pause_box.isChecked() != paused:
            self.pause_box.setChecked(paused)
            return
        self.paused = paused
        self._pauseRequested.emit(paused)
        self._notice_pause(paused)

    def _notice_pause(self, paused: bool) -> None:
        self._on_notice("Paused — press Space to continue" if paused else "")

    def set_recording(self, on: bool) -> None:
        """Start (into the output folder) or stop the recording."""
        if on and self.recording_path is None and not self._record_pending:
            self._record_pending = True
            self._recordStart.emit(str(self.output_dir))
            self.rec_label.setText("● REC starting…")
        elif not on and (self.recording_path is not None or self._record_pending):
            self._recordStop.emit()
        self.record_button.setChecked(on)

    def _on_recording_started(self, path: str) -> None:
        self._record_pending = False
        self.recording_path = path
        self.record_button.setChecked(True)
        self.record_button.setText("■ Stop (R)")
        self.statusBar().showMessage(f"Recording to {path}", 5000)

    def _on_recording_stopped(self, path: str, summary: str) -> None:
        self._record_pending = False
        self.recording_path = None
        self.record_button.setChecked(False)
        self.record_button.setText("● Record (R)")
        self.rec_label.setText("")
        if path:
            self.last_recording = path
            self.last_file_label.setText(f"Saved {Path(path).name} ({summary})")
            self.last_file_label.setToolTip(path)
            self.statusBar().showMessage(f"Recording saved: {path} ({summary})", 10_000)

    def snapshot(self) -> None:
        self._snapshotRequested.emit(str(self.output_dir))

    def _on_snapshot(self, path: str) -> None:
        self.last_snapshot = path
        self.last_file_label.setText(f"Snapshot {Path(path).name}")
        self.last_file_label.setToolTip(path)
        self.statusBar().showMessage(f"Snapshot saved: {path}", 6000)

    def _on_vcam_box(self, on: bool) -> None:
        self._vcamRequested.emit(on)

    def _on_vcam_changed(self, on: bool, detail: str) -> None:
        self.vcam_box.blockSignals(True)
        self.vcam_box.setChecked(on)
        self.vcam_box.blockSignals(False)
        if on:
            self.statusBar().showMessage(f"Virtual camera on: {detail}", 6000)
        elif detail:
            self.show_error(detail)

    def _choose_source(self, req: SourceRequest) -> None:
        if req.spec is not None and req.spec.isdigit():
            self.settings.camera = req.spec
            self.settings.camera_size = req.size
            self.settings.camera_fps = req.fps
        self._sourceRequested.emit(req)

    def _pick_output_dir(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Folder for recordings and snapshots", str(self.output_dir))
        if path:
            self.output_dir = Path(path)
            self._remember_output_dir = True
            self._show_output_dir()

    def _show_output_dir(self) -> None:
        self.dir_label.setText(f"Saving to {self.output_dir}")
        self.dir_label.setToolTip(str(self.output_dir))

    def toggle_fullscreen(self) -> None:
        if self.isFullScreen():
            self.escape()
        else:
            self.dock.hide()
            self.statusBar().hide()
            self.showFullScreen()

    def escape(self) -> None:
        if self.view.help_visible:
            self.view.set_help_visible(False)
        elif self.isFullScreen():
            self.showNormal()
            self.dock.show()
            self.statusBar().show()

    def toggle_help(self) -> None:
        self.view.set_help_visible(not self.view.help_visible)
