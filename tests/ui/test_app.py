"""The real main window driven by key presses (pytest-qt, offscreen) on a clip, with test packs."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from PyQt6.QtCore import Qt

from realtime.errors import DeviceError, InputError
from realtime.pipeline import Pipeline, PipelineConfig
from tests.ui.conftest import STYLES, private_settings
from ui.app import add_live_arguments, build_config, parse_size, source_request
from ui.main_window import MainWindow
from ui.worker import SourceRequest

pytestmark = pytest.mark.timeout(60)


def open_window(qtbot, pack_dir: Path, clip: Path, settings_path: Path, out_dir: Path,
                source: SourceRequest | None = None, **config) -> MainWindow:
    # cpu_engine="eager": no background engine measurement (the pipeline's business, tested there)
    # competing for the two cores while the window is timed.
    config.setdefault("cpu_engine", "eager")
    pipe = Pipeline(PipelineConfig(styles_dirs=[str(pack_dir)], include_user_styles=False,
                                   include_shipped_styles=False, **config))
    # 320×240 keeps stylizing and encoding cheap on a loaded 2-core machine, whatever the clip.
    win = MainWindow(pipe, source or SourceRequest(str(clip), (320, 240), loop=True),
                     private_settings(settings_path), output_dir=out_dir)
    qtbot.addWidget(win)
    win.show()
    win.activateWindow()
    qtbot.waitExposed(win)
    win.start()
    qtbot.waitUntil(lambda: win.view.painted_frames > 0, timeout=20_000)
    return win


def press(qtbot, win: MainWindow, key: Qt.Key, modifier=Qt.KeyboardModifier.NoModifier) -> None:
    qtbot.keyClick(win.view, key, modifier)


def close(qtbot, win: MainWindow) -> None:
    win.close()
    assert not win._thread.isRunning()


def decode(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="bgr24") for f in c.decode(video=0)]


@pytest.fixture
def window(qtbot, pack_dir, clip, settings_path, tmp_path):
    win = open_window(qtbot, pack_dir, clip, settings_path, tmp_path / "out")
    yield win
    if win.isVisible():
        close(qtbot, win)


def test_digit_and_arrow_keys_switch_styles(qtbot, window):
    keys = [f"testpack/{s}" for s in STYLES]
    assert window.style_key == keys[0]
    press(qtbot, window, Qt.Key.Key_3)
    qtbot.waitUntil(lambda: window.style_key == keys[2], timeout=15_000)
    assert window.gallery.currentRow() == 2
    press(qtbot, window, Qt.Key.Key_1)
    qtbot.waitUntil(lambda: window.style_key == keys[0], timeout=15_000)
    press(qtbot, window, Qt.Key.Key_Right)
    qtbot.waitUntil(lambda: window.style_key == keys[1], timeout=15_000)
    press(qtbot, window, Qt.Key.Key_BracketLeft)
    qtbot.waitUntil(lambda: window.style_key == keys[0], timeout=15_000)
    press(qtbot, window, Qt.Key.Key_Left)  # wraps to the last style
    qtbot.waitUntil(lambda: window.style_key == keys[2], timeout=15_000)
    press(qtbot, window, Qt.Key.Key_9)  # no ninth style: nothing changes
    qtbot.wait(200)
    assert window.style_key == keys[2]
    # The frames shown carry the new style (the pipeline reports which one it ran).
    qtbot.waitUntil(lambda: window.last_info is not None and window.last_info.stats.style == keys[2], timeout=15_000)


def test_r_twice_writes_a_decodable_video(qtbot, window, tmp_path):
    press(qtbot, window, Qt.Key.Key_R)
    qtbot.waitUntil(lambda: window.recording_path is not None, timeout=15_000)
    assert "REC" in window.rec_label.text()
    start = window.worker.frames_processed
    qtbot.waitUntil(lambda: window.worker.frames_processed >= start + 8, timeout=20_000)
    press(qtbot, window, Qt.Key.Key_R)
    qtbot.waitUntil(lambda: window.last_recording is not None, timeout=20_000)
    path = Path(window.last_recording)
    assert path.parent == tmp_path / "out" and path.suffix == ".mkv"
    assert path.name in window.last_file_label.text()  # the file name is shown when done
    frames = decode(path)
    assert len(frames) >= 6
    assert frames[0].shape == (window.view.current_image().height(), window.view.current_image().width(), 3)
    assert window.recording_path is None and not window.record_button.isChecked()


def test_s_writes_a_png_of_the_shown_picture(qtbot, window, tmp_path):
    press(qtbot, window, Qt.Key.Key_S)
    qtbot.waitUntil(lambda: window.last_snapshot is not None, timeout=15_000)
    path = Path(window.last_snapshot)
    assert path.suffix == ".png" and path.parent == tmp_path / "out"
    img = cv2.imread(str(path))
    shown = window.view.current_image()
    assert img is not None and img.shape == (shown.height(), shown.width(), 3)
    assert img.std() > 5  # a real picture, not a blank frame


def test_settings_survive_a_restart(qtbot, pack_dir, clip, settings_path, tmp_path):
    win = open_window(qtbot, pack_dir, clip, settings_path, tmp_path / "out")
    press(qtbot, win, Qt.Key.Key_2)
    qtbot.waitUntil(lambda: win.style_key == "testpack/beta", timeout=15_000)
    press(qtbot, win, Qt.Key.Key_Minus)
    press(qtbot, win, Qt.Key.Key_Minus)
    press(qtbot, win, Qt.Key.Key_B)  # all -> person
    press(qtbot, win, Qt.Key.Key_M)
    assert win.strength.value() == 80 and win.mirror_box.isChecked()
    assert win.regions.current_preset() == "person"
    win.resize(720, 560)  # within the 800×800 offscreen screen (restoring clamps to the screen)
    close(qtbot, win)

    # A fresh pipeline starts with defaults; the window restores the saved choices onto it.
    again = open_window(qtbot, pack_dir, clip, settings_path, tmp_path / "elsewhere")
    assert again.style_key == "testpack/beta"
    assert again.strength.value() == 80 and again.mirror_box.isChecked()
    assert again.regions.current_preset() == "person"
    assert (again.width(), again.height()) == (720, 560)
    assert again.output_dir == tmp_path / "elsewhere"  # an explicit folder wins over the saved one
    qtbot.waitUntil(lambda: again.last_info is not None and again.last_info.stats.style == "testpack/beta",
                    timeout=15_000)
    close(qtbot, again)


def test_closing_mid_recording_leaves_a_playable_file(qtbot, pack_dir, clip, settings_path, tmp_path):
    win = open_window(qtbot, pack_dir, clip, settings_path, tmp_path / "out")
    press(qtbot, win, Qt.Key.Key_R)
    qtbot.waitUntil(lambda: win.recording_path is not None, timeout=15_000)
    path = Path(win.recording_path)
    start = win.worker.frames_processed
    qtbot.waitUntil(lambda: win.worker.frames_processed >= start + 6, timeout=20_000)
    press(qtbot, win, Qt.Key.Key_Q, Qt.KeyboardModifier.ControlModifier)  # Ctrl+Q closes the window
    qtbot.waitUntil(lambda: not win.isVisible(), timeout=20_000)
    assert not win._thread.isRunning()
    assert len(decode(path)) >= 5


def test_disk_full_while_recording_says_once_what_was_saved(qtbot, window, monkeypatch, caplog):
    import logging

    from realtime.sinks import Recorder
    from tests.realtime.test_sinks import small_disk
    from ui import worker

    # The disk fills up as the first frames are written out, at R; the 512 KiB held back is room to finish.
    monkeypatch.setattr(worker, "_new_recorder", lambda path, w, h, fps: Recorder(
        path, w, h, fps, opener=small_disk(512 * 1024 + 4_000, reserve=512 * 1024)))
    with caplog.at_level(logging.INFO):
        press(qtbot, window, Qt.Key.Key_R)
        qtbot.waitUntil(lambda: window.recording_path is not None, timeout=15_000)
        start = window.worker.frames_processed
        qtbot.waitUntil(lambda: window.worker.frames_processed >= start + 4, timeout=20_000)
        press(qtbot, window, Qt.Key.Key_R)
        qtbot.waitUntil(lambda: window.last_recording is not None, timeout=15_000)
    notice = window.view.notice
    assert window.view.notice_is_error and not window.record_button.isChecked()
    saved = int(re.search(r"the first (\d+) frames \(", notice).group(1))
    assert len(decode(Path(window.last_recording))) == saved > 0, "the window says what the file holds"
    assert window.last_file_label.text().startswith(f"Saved {Path(window.last_recording).name} ({saved} frames")
    assert sum("disk is full" in r.getMessage() for r in caplog.records) == 1, "reported once"


def test_help_overlay_pause_strength_and_fullscreen(qtbot, window):
    press(qtbot, window, Qt.Key.Key_H)
    assert window.view.help_visible
    press(qtbot, window, Qt.Key.Key_Escape)
    assert not window.view.help_visible
    press(qtbot, window, Qt.Key.Key_Question)
    assert window.view.help_visible
    press(qtbot, window, Qt.Key.Key_H)
    assert not window.view.help_visible

    press(qtbot, window, Qt.Key.Key_Space)
    assert window.paused
    qtbot.wait(300)  # let the frame in flight land
    n = window.worker.frames_processed
    qtbot.wait(400)
    assert window.worker.frames_processed == n
    press(qtbot, window, Qt.Key.Key_Space)
    qtbot.waitUntil(lambda: window.worker.frames_processed > n, timeout=15_000)

    press(qtbot, window, Qt.Key.Key_Minus)
    assert window.strength.value() == 90
    press(qtbot, window, Qt.Key.Key_Plus)
    assert window.strength.value() == 100

    press(qtbot, window, Qt.Key.Key_F)
    qtbot.waitUntil(window.isFullScreen, timeout=10_000)
    assert not window.dock.isVisible()
    press(qtbot, window, Qt.Key.Key_Escape)
    qtbot.waitUntil(lambda: not window.isFullScreen(), timeout=10_000)
    assert window.dock.isVisible()


def test_b_cycles_presets_and_the_person_gets_its_own_treatment(qtbot, window):
    names = []
    for _ in range(5):
        press(qtbot, window, Qt.Key.Key_B)
        names.append(window.regions.current_preset())
    assert names == ["person", "background", "split", "blur", "all"]
    press(qtbot, window, Qt.Key.Key_B)  # person: style on the person, the background stays original
    assert window.regions.current() == ("style", "original")
    # Segmentation now runs (person and background differ).
    qtbot.waitUntil(lambda: window.last_info is not None and window.last_info.stats.segmented, timeout=20_000)


def test_v_without_a_virtual_camera_says_what_to_do(qtbot, window, monkeypatch):
    from ui import worker
    from ui.virtualcam import VirtualCameraError, explain_failure

    def missing(*_a, **_k):
        raise VirtualCameraError(explain_failure(RuntimeError(
            "'v4l2loopback' backend: No v4l2 loopback device found at /dev/video[0-99]."), platform="linux"))

    monkeypatch.setattr(worker, "VirtualCamera", missing)
    press(qtbot, window, Qt.Key.Key_V)
    qtbot.waitUntil(lambda: "modprobe v4l2loopback exclusive_caps=1" in window.view.notice, timeout=15_000)
    assert window.view.notice_is_error and not window.vcam_box.isChecked()


def test_no_camera_plays_the_demo_clip_with_a_notice(qtbot, pack_dir, clip, settings_path, tmp_path, monkeypatch):
    from ui import worker

    real_open = worker._open_source

    def no_cameras(req):
        if req.spec is None or req.spec.isdigit():
            raise DeviceError("camera 0 not found; no cameras were found on this machine")
        return real_open(req)

    monkeypatch.setattr(worker, "_open_source", no_cameras)
    monkeypatch.setattr(worker, "_demo_clip", lambda: clip)
    win = open_window(qtbot, pack_dir, clip, settings_path, tmp_path, source=SourceRequest(None))
    assert "demo clip" in win.view.notice and "No camera" in win.view.notice
    assert "demo clip" in win.cameras.current.text()
    close(qtbot, win)


def test_an_unreadable_file_plays_the_demo_clip_and_says_why(qtbot, pack_dir, clip, settings_path, tmp_path,
                                                              monkeypatch):
    from ui import worker

    text = tmp_path / "text.mp4"
    text.write_text("not a video\n" * 50)
    monkeypatch.setattr(worker, "_demo_clip", lambda: clip)
    win = open_window(qtbot, pack_dir, clip, settings_path, tmp_path, source=SourceRequest(str(text)))
    notice = win.view.notice
    assert str(text) in notice and "is not a video or image" in notice, notice  # the error, in the window
    assert "demo clip" in notice and "demo clip" in win.cameras.current.text()
    qtbot.waitUntil(lambda: win.fps_label.text().endswith(" fps") and win.fps_label.text() != "— fps",
                    timeout=15_000)
    close(qtbot, win)


class _LostCamera:
    """A source whose camera was unplugged: no frames, the reconnecting state."""

    name, width, height, fps, dropped = "camera 0", 320, 240, 30.0, 0
    state, message, error = "reconnecting", "camera 0 lost; retrying in 0.5 s (attempt 1)", None

    def read(self, timeout=None):
        import time

        time.sleep(timeout or 0)
        return None

    def close(self):
        pass


def test_unplugged_camera_shows_a_notice_and_the_ui_keeps_running(qtbot, pack_dir, clip, settings_path, tmp_path,
                                                                   monkeypatch):
    from ui import worker

    win = open_window(qtbot, pack_dir, clip, settings_path, tmp_path)
    monkeypatch.setattr(worker, "_open_source", lambda req: _LostCamera())
    win._choose_source(SourceRequest("0", (320, 240), 30.0))
    qtbot.waitUntil(lambda: "reconnecting" in win.view.notice or "lost" in win.view.notice, timeout=15_000)
    press(qtbot, win, Qt.Key.Key_H)  # the window still answers
    assert win.view.help_visible
    close(qtbot, win)


def _live_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_live_arguments(parser)
    return parser.parse_args(list(argv))


def test_live_flags_are_checked_before_a_window_opens(tmp_path):
    with pytest.raises(InputError, match="--source .*missing.mp4: no such file"):
        source_request(_live_args("--source", str(tmp_path / "missing.mp4")))
    with pytest.raises(InputError, match="--size 640by480: expected WIDTHxHEIGHT"):
        parse_size("640by480")
    with pytest.raises(InputError, match="--strength 2"):
        build_config(_live_args("--strength", "2"))
    with pytest.raises(InputError, match="--background"):
        build_config(_live_args("--background", "image:" + str(tmp_path / "nope.jpg")))
    req = source_request(_live_args("--source", "1", "--size", "1280x720", "--fps", "60"))
    assert (req.spec, req.size, req.fps) == ("1", (1280, 720), 60.0)
    cfg = build_config(_live_args("--person", "style:beta", "--background", "blur:8", "--backend", "cpu"))
    assert (str(cfg.person), str(cfg.background), cfg.backend) == ("style:beta", "blur:8", "cpu")


def test_virtual_camera_errors_say_how_to_fix_them(monkeypatch):
    import sys

    from ui.virtualcam import LOOPBACK_HINT, VirtualCamera, VirtualCameraError, explain_failure

    msg = explain_failure(RuntimeError("'v4l2loopback' backend: No v4l2 loopback device found at "
                                       "/dev/video[0-99]. Did you run 'modprobe v4l2loopback'?"), platform="linux")
    assert LOOPBACK_HINT in msg and LOOPBACK_HINT == "sudo modprobe v4l2loopback exclusive_caps=1"
    assert "OBS" in explain_failure(RuntimeError("no backend"), platform="win32")
    monkeypatch.setitem(sys.modules, "pyvirtualcam", None)  # the optional extra is not installed
    with pytest.raises(VirtualCameraError, match=r"pip install 'stylecam\[virtualcam\]'"):
        VirtualCamera(320, 240, 30)


def test_bad_choices_show_an_error_in_the_window_and_the_loop_goes_on(qtbot, window, tmp_path):
    window._on_regions("style", "image:" + str(tmp_path / "gone.jpg"))
    qtbot.waitUntil(lambda: "no such image file" in window.view.notice, timeout=15_000)
    assert window.view.notice_is_error
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the output folder should be")
    window.output_dir = blocker
    press(qtbot, window, Qt.Key.Key_R)
    qtbot.waitUntil(lambda: "cannot record" in window.view.notice, timeout=15_000)
    assert "is a file, not a folder" in window.view.notice
    qtbot.waitUntil(lambda: not window.record_button.isChecked(), timeout=15_000)
    assert window.recording_path is None
    n = window.worker.frames_processed
    qtbot.waitUntil(lambda: window.worker.frames_processed > n + 3, timeout=15_000)


def test_live_takes_the_shared_pipeline_flags():
    cfg = build_config(_live_args("--preset", "split", "--cpu-engine", "eager", "--no-segmentation",
                                  "--seg-model", "square", "--mask-smoothing", "0.3", "--mirror"))
    assert (str(cfg.person), str(cfg.background)) == ("style", "style:@next")
    assert (cfg.cpu_engine, cfg.segmentation, cfg.seg_model, cfg.mask_smoothing, cfg.mirror) == \
        ("eager", False, "square", 0.3, True)
    cfg = build_config(_live_args("--preset", "person", "--background", "blur:5"))  # the explicit flag wins
    assert (str(cfg.person), str(cfg.background)) == ("style", "blur:5")
    with pytest.raises(InputError, match="--mask-smoothing 2"):
        build_config(_live_args("--mask-smoothing", "2"))


def test_a_still_image_keeps_showing(qtbot, pack_dir, settings_path, tmp_path):
    from tests.helpers import synthetic_frame

    image = tmp_path / "still.png"
    cv2.imwrite(str(image), synthetic_frame(240, 320))
    win = open_window(qtbot, pack_dir, image, settings_path, tmp_path, source=SourceRequest(str(image)))
    n = win.worker.frames_processed
    qtbot.waitUntil(lambda: win.worker.frames_processed >= n + 5, timeout=15_000)
    assert "ended" not in win.view.notice
    close(qtbot, win)
