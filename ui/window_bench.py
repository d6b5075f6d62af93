"""Window overhead benchmark (``python -m ui.window_bench --json OUT``); prints JSON.

Three measurements, all on the demo clip (or ``--source``) at 640×480:

* **paint** — what the UI thread adds per frame: wrapping the frame as a ``QImage`` and
  painting it into the view (``repaint()`` is synchronous), at 1:1 and at a 2× enlarged view;
* **live** — the real main window running the pipeline on the paced clip for ``--seconds``:
  frames shown per second, frames processed, dropped frames, and event-loop stalls measured
  by a 5 ms ``QTimer`` probe (how late each tick fires);
* the same with **recording** on, so the stall figures can be compared with a baseline
  measured in the same run;
* **passthrough**: both regions ``original`` (no network, no segmentation), so what is left is
  capture, the worker loop and the window — the rate the app itself can show.

Run it under the platform you care about: ``QT_QPA_PLATFORM=offscreen`` (default here when
no display is set) or a real X server (``xvfb-run python -m ui.window_bench``).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PyQt6.QtCore import PYQT_VERSION_STR, QT_VERSION_STR, QElapsedTimer, QSettings, QTimer  # noqa: E402
from PyQt6.QtTest import QTest  # noqa: E402
from PyQt6.QtWidgets import QApplication  # noqa: E402

from realtime.benchmarks.common import emit_json, load_frames, percentile  # noqa: E402

PROBE_MS = 5


def _summary(xs: list[float]) -> dict:
    return {"median": percentile(xs, 50), "p95": percentile(xs, 95), "max": round(max(xs), 3) if xs else None, "n": len(xs)}


def bench_paint(frames: list[np.ndarray], view_scale: float, repeats: int) -> dict:
    """Milliseconds per frame for ``show_frame`` + a synchronous repaint of a view ``view_scale``× the frame."""
    from ui.view import VideoView, bgr_to_qimage

    view = VideoView()
    h, w = frames[0].shape[:2]
    view.resize(int(w * view_scale), int(h * view_scale))
    view.show()
    # repaint() is a no-op until the window system has mapped the window.
    if not QTest.qWaitForWindowExposed(view, 5000):
        raise RuntimeError("the view was never shown on screen")
    painted0 = view.painted_frames
    convert, total = [], []
    for i in range(repeats):
        f = frames[i % len(frames)]
        t0 = time.perf_counter()
        bgr_to_qimage(f)
        t1 = time.perf_counter()
        view.show_frame(f)
        view.repaint()
        t2 = time.perf_counter()
        if i >= 10:  # warm-up: first paints allocate the backing store
            convert.append((t1 - t0) * 1000)
            total.append((t2 - t1) * 1000)
    painted = view.painted_frames - painted0
    view.close()
    if painted < repeats:
        raise RuntimeError(f"only {painted} of {repeats} repaints reached paintEvent")
    return {"view_size": [view.width(), view.height()], "qimage_ms": _summary(convert),
            "show_and_paint_ms": _summary(total)}


class StallProbe:
    """A ``QTimer`` ticking every :data:`PROBE_MS` ms; records how late each tick fires."""

    def __init__(self):
        self.lateness: list[float] = []
        self._clock = QElapsedTimer()
        self._timer = QTimer()
        self._timer.setInterval(PROBE_MS)
        self._timer.timeout.connect(self._tick)
        self._last = 0

    def start(self) -> None:
        self._clock.start()
        self._last = 0
        self._timer.start()

    def stop(self) -> None:
        self._timer.stop()

    def _tick(self) -> None:
        now = self._clock.nsecsElapsed() / 1e6
        if self._last:
            self.lateness.append(max(0.0, now - self._last - PROBE_MS))
        self._last = now


def _run_window(source: str, styles: list[str], preset: str, seconds: float, record: bool, out_dir: Path,
                size: tuple[int, int] = (640, 480), first_s: float = 0.0) -> dict:
    from realtime.pipeline import Pipeline, PipelineConfig
    from ui.main_window import MainWindow
    from ui.settings import AppSettings
    from ui.worker import SourceRequest

    app = QApplication.instance()
    from realtime.composite import PRESETS, Treatment

    # "passthrough": both regions original, so no network and no segmentation run; what is left is
    # capture, the worker loop and the window, which shows how fast the app itself can go.
    person, background = (Treatment("original"),) * 2 if preset == "passthrough" else PRESETS[preset]
    pipe = Pipeline(PipelineConfig(styles_dirs=styles, person=person, background=background))
    settings = AppSettings(QSettings(str(out_dir / "bench-settings.ini"), QSettings.Format.IniFormat))
    win = MainWindow(pipe, SourceRequest(source, size, None, loop=True), settings, output_dir=out_dir,
                     explicit=frozenset({"preset"}))
    win.resize(1180, 720)
    win.show()
    win.start()
    first: dict = {}
    if first_s > 0:  # what the viewer sees from the start, while engines are measured and compiled
        t_start = time.perf_counter()
        _wait(app, lambda: time.perf_counter() - t_start >= first_s, first_s + 5)
        first = {"first_seconds": first_s, "first_painted": win.view.painted_frames,
                 "first_dropped": win.last_info.dropped if win.last_info else 0}
    # Warm up (engine choice, segmentation model load), then measure.
    _wait(app, lambda: win.worker.frames_processed >= 30, 60)
    if record:
        win.set_recording(True)
        _wait(app, lambda: win.recording_path is not None, 10)
    probe = StallProbe()
    painted0, processed0 = win.view.painted_frames, win.worker.frames_processed
    dropped0 = win.last_info.dropped if win.last_info else 0
    totals: list[float] = []
    win.worker.frameReady.connect(lambda _f, info: totals.append(info.stats.total_ms))
    probe.start()
    t0 = time.perf_counter()
    _wait(app, lambda: time.perf_counter() - t0 >= seconds, seconds + 5)
    elapsed = time.perf_counter() - t0
    probe.stop()
    painted = win.view.painted_frames - painted0
    processed = win.worker.frames_processed - processed0
    dropped = (win.last_info.dropped if win.last_info else 0) - dropped0
    if record:
        win.set_recording(False)
        _wait(app, lambda: win.last_recording is not None, 20)
    recording = win.last_recording
    win.close()
    return {"seconds": round(elapsed, 2), "fps_shown": round(painted / elapsed, 2),
            "fps_processed": round(processed / elapsed, 2), "dropped": dropped,
            "pipeline_total_ms_median": percentile(totals, 50),
            "stall_ms": _summary(probe.lateness), "recording": recording, **first}


def _wait(app, cond, timeout: float) -> None:
    t0 = time.perf_counter()
    while not cond():
        if time.perf_counter() - t0 > timeout:
            raise TimeoutError("the window did not get there in time")
        app.processEvents()
        time.sleep(0.002)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ui.window_bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", help="video to play (default: the bundled demo clip)")
    parser.add_argument("--styles", action="append", default=[], metavar="DIR", help="extra style packs")
    parser.add_argument("--preset", default="blur", choices=["all", "person", "background", "split", "blur"],
                        help="region preset of the live runs (default blur: segmentation on, person styled, "
                             "background blurred)")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each live run")
    parser.add_argument("--size", default="640x480", metavar="WxH", help="frame size of the live runs")
    parser.add_argument("--first-seconds", type=float, default=30.0,
                        help="also count the frames dropped in the first N seconds of the first live run (0: off)")
    parser.add_argument("--paints", type=int, default=300, help="frames in the paint benchmark")
    parser.add_argument("--json", metavar="OUT", type=Path, help="also write the JSON here")
    args = parser.parse_args(argv)
    if args.paints <= 10:
        parser.error("--paints must be more than 10 (the first 10 paints warm up)")

    from kernels.provenance import provenance

    source = args.source
    if source is None:
        from realtime.demo import DEMO_CLIP

        source = str(DEMO_CLIP)
    app = QApplication.instance() or QApplication([sys.argv[0]])
    from realtime.errors import InputError
    from realtime.sizes import parse_size

    try:
        size = parse_size(args.size, "--size")
    except InputError as e:
        parser.error(str(e))  # one line and exit 2, like every other bad flag
    frames, _ = load_frames(source, size, 60)
    result = {
        "benchmark": "ui",
        **provenance(qt=QT_VERSION_STR, pyqt=PYQT_VERSION_STR),
        # Other work on the machine shows up as stalls and lower fps: keep the load with the numbers.
        "load_average_1m_at_start": round(os.getloadavg()[0], 2),
        "qt_platform": app.platformName(),
        "source": source,
        "frame_size": list(size),
        "paint_1x": bench_paint(frames, 1.0, args.paints),
        "paint_2x": bench_paint(frames, 2.0, args.paints),
    }
    with tempfile.TemporaryDirectory() as tmp:
        result["preset"] = args.preset
        result["live"] = _run_window(source, args.styles, args.preset, args.seconds, False, Path(tmp), size,
                                     args.first_seconds)
        result["live_recording"] = _run_window(source, args.styles, args.preset, args.seconds, True, Path(tmp), size)
        result["live_passthrough"] = _run_window(source, args.styles, "passthrough", args.seconds, False, Path(tmp),
                                                 size)
        for k in ("live", "live_recording", "live_passthrough"):
            result[k].pop("recording", None)
    ui_ms = result["paint_1x"]["show_and_paint_ms"]["median"] + result["paint_1x"]["qimage_ms"]["median"]
    result["targets"] = {
        "ui_ms_per_frame_1x": round(ui_ms, 3), "ui_ms_target": 2.0,
        "fps_shown": result["live"]["fps_shown"], "fps_shown_passthrough": result["live_passthrough"]["fps_shown"],
        "fps_target": 30.0,
        "stall_ms_max_recording": result["live_recording"]["stall_ms"]["max"],
        "stall_ms_p95_recording": result["live_recording"]["stall_ms"]["p95"],
        "stall_ms_max_baseline": result["live"]["stall_ms"]["max"], "stall_ms_target": 50.0,
    }
    result["load_average_1m_at_end"] = round(os.getloadavg()[0], 2)
    emit_json(result, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
