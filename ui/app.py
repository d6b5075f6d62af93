"""``stylecam live``: the command-line entry of the desktop app.

``ui/cli.py`` adds these flags to the ``live`` sub-command (the default one) with
:func:`add_live_arguments` and calls :func:`run_live`.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from pathlib import Path

from realtime.errors import DeviceError, InputError
from ui.args import add_pipeline_arguments, parse_size, pipeline_config

log = logging.getLogger("stylecam.ui")


def add_live_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the flags of ``stylecam live`` to ``parser``."""
    g = parser.add_argument_group("live")
    g.add_argument("--source", metavar="0|FILE|IMAGE",
                   help="camera index, video file or image (default: the last camera used, else camera 0; "
                        "with no camera the bundled demo clip plays)")
    g.add_argument("--loop", action="store_true", help="restart a video file at its end")
    g.add_argument("--size", metavar="WxH", help="camera resolution to ask for, or the size files are scaled to "
                                                  "(e.g. 640x480)")
    g.add_argument("--fps", type=float, metavar="N", help="camera frame rate to ask for")
    g.add_argument("--output-dir", metavar="DIR", type=Path,
                   help="folder for recordings and snapshots (default: your videos folder /stylecam)")
    add_pipeline_arguments(g, live=True)
    g.add_argument("--settings", metavar="FILE", type=Path,
                   help="keep settings in this INI file instead of your user settings")


def _check_display() -> None:
    """Fail with one line instead of Qt's abort when there is no screen to open a window on."""
    if not sys.platform.startswith("linux"):
        return
    platform = os.environ.get("QT_QPA_PLATFORM", "")
    if platform and not platform.startswith(("xcb", "wayland")):
        return  # offscreen, vnc, eglfs, …: Qt needs no display server
    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        raise DeviceError("no display: the live app needs a desktop session (DISPLAY is not set); "
                          "to stylize a file without a window use `stylecam render`")


def _explicit(args: argparse.Namespace) -> frozenset[str]:
    names = {"style": args.style, "person": args.person, "background": args.background, "preset": args.preset,
             "strength": args.strength, "mirror": args.mirror, "source": args.source}
    return frozenset(k for k, v in names.items() if v is not None)


def build_config(args: argparse.Namespace):
    """The ``PipelineConfig`` the flags describe (bad values raise :class:`InputError`)."""
    return pipeline_config(args)


def source_request(args: argparse.Namespace):
    """The :class:`~ui.worker.SourceRequest` for ``--source/--size/--fps/--loop``."""
    from .worker import SourceRequest

    spec = args.source
    if spec is not None:
        spec = spec.strip()
        is_camera = spec.isdigit() or spec.startswith("/dev/video")
        if not is_camera and not Path(spec).expanduser().is_file():
            raise InputError(f"--source {spec}: no such file (expected a camera index, a video or an image)")
        if not is_camera:
            spec = str(Path(spec).expanduser())
    if args.fps is not None and not 0 < args.fps <= 240:
        raise InputError(f"--fps {args.fps}: expected a number from 1 to 240")
    return SourceRequest(spec, parse_size(args.size) if args.size else None, args.fps, bool(args.loop))


def registry_user_dir() -> str:
    from realtime.styles import user_styles_dir

    return str(user_styles_dir())


def _install_excepthook(window) -> object:
    """Show an unexpected error in the window and keep running, instead of PyQt's abort.

    PyQt ends the process on an exception that escapes a slot; that would skip finishing a
    recording. Returns the previous hook.
    """
    previous = sys.excepthook

    def hook(etype, value, tb) -> None:
        if issubclass(etype, KeyboardInterrupt):
            previous(etype, value, tb)
            return
        log.error("unexpected error", exc_info=(etype, value, tb))
        window.errorReported.emit(f"unexpected error: {etype.__name__}: {value} (details in the terminal log)")

    sys.excepthook = hook
    return previous


def run_live(args: argparse.Namespace) -> int:
    """Open the window and run until it closes; return the exit code.

    Raises:
        StylecamError: a bad flag, style or backend (before any window opens).
    """
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="stylecam: %(message)s")
    source = source_request(args)
    config = build_config(args)
    if args.output_dir is not None and args.output_dir.exists() and not args.output_dir.is_dir():
        raise InputError(f"--output-dir {args.output_dir}: is a file, expected a folder")

    from realtime.composite import Treatment
    from realtime.styles import StyleRegistry

    registry = StyleRegistry(config.styles_dirs)  # a bad --styles folder fails here, before a window opens
    if config.style:
        registry.find(config.style)
    _check_display()

    from PyQt6.QtCore import QSettings, QTimer
    from PyQt6.QtWidgets import QApplication

    from realtime.pipeline import Pipeline

    from .main_window import MainWindow
    from .settings import APPLICATION, ORGANIZATION, AppSettings, default_settings

    app = QApplication.instance() or QApplication([sys.argv[0]])
    app.setOrganizationName(ORGANIZATION)
    app.setApplicationName(APPLICATION)
    store = (QSettings(str(args.settings), QSettings.Format.IniFormat) if args.settings
             else default_settings())
    no_styles = not len(registry) and not (args.person or args.background or args.preset)
    if no_styles:  # still useful: blur or replace the background
        config.person, config.background = Treatment("original"), Treatment("blur")
    pipeline = Pipeline(config, registry=registry)
    window = MainWindow(pipeline, source, AppSettings(store), output_dir=args.output_dir,
                        explicit=_explicit(args) | ({"person", "background"} if no_styles else set()))
    if no_styles:
        window.show_error("No styles are installed. Add a style pack with --styles DIR (or copy it to "
                          f"{registry_user_dir()}); meanwhile the background is blurred.")

    # Ctrl+C in the terminal and SIGTERM close the window like Ctrl+Q, so a recording is finished.
    # Python only runs signal handlers when the interpreter gets control: a timer makes sure it does.
    def on_signal(_signum, _frame) -> None:
        QTimer.singleShot(0, window.close)

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    old_hook = _install_excepthook(window)
    wake = QTimer(interval=200)
    wake.timeout.connect(lambda: None)
    wake.start()
    try:
        window.show()
        window.start()
        rc = app.exec()
    finally:
        window.shutdown()  # idempotent; covers exits that bypass closeEvent
        wake.stop()
        sys.excepthook = old_hook
        for s, h in old.items():
            signal.signal(s, h)
    return int(rc)


def main(argv: list[str] | None = None) -> int:
    """``python -m ui.app``: the live app without the rest of the command line."""
    from realtime.errors import StylecamError

    parser = argparse.ArgumentParser(prog="stylecam live", description="Live stylized camera window.")
    add_live_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run_live(args)
    except StylecamError as e:
        print(f"stylecam: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
