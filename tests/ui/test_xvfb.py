"""The app in a real X window: start ``python -m ui.app`` under Xvfb, screenshot the screen, quit with SIGTERM.

Needs Debian's ``xvfb`` (the X server), ``x11-apps`` (``xwd``) and ImageMagick (``convert``);
skips with the reason when they are missing. Set ``STYLECAM_SCREENSHOT_DIR`` to keep the PNG.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
MISSING = [tool for tool in ("Xvfb", "xwd", "convert") if shutil.which(tool) is None]

pytestmark = [
    pytest.mark.timeout(90),
    pytest.mark.skipif(bool(MISSING), reason=f"needs {', '.join(MISSING)} (Debian: apt-get install xvfb x11-apps "
                                             "imagemagick libxcb-cursor0)"),
]


@pytest.fixture
def xserver():
    """A private Xvfb display; ``-displayfd`` picks a free display number."""
    read_fd, write_fd = os.pipe()
    proc = subprocess.Popen(["Xvfb", "-displayfd", str(write_fd), "-screen", "0", "1280x800x24", "-nolisten", "tcp"],
                            pass_fds=(write_fd,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(write_fd)
    with os.fdopen(read_fd) as f:
        number = f.readline().strip()
    if not number:
        proc.kill()
        pytest.fail("Xvfb did not start")
    yield f":{number}"
    proc.terminate()
    proc.wait(10)


def screenshot(display: str, out: Path) -> np.ndarray:
    env = {**os.environ, "DISPLAY": display}
    xwd = subprocess.run(["xwd", "-root", "-silent"], env=env, capture_output=True, check=True, timeout=20)
    subprocess.run(["convert", "xwd:-", f"png:{out}"], input=xwd.stdout, check=True, timeout=30)
    img = cv2.imread(str(out))
    assert img is not None, f"{out} is not a readable PNG"
    return img


def _not_showing_video(img: np.ndarray) -> str | None:
    """Why the screenshot is not the app showing video, or None when it is."""
    if img.shape != (800, 1280, 3):
        return f"unexpected screen size {img.shape}"
    window = img[:700, :1150]
    # Xvfb's empty root is one flat colour; the window paints the view, gallery and status bar.
    if window.std() < 20:
        return "the screenshot shows no window"
    view = img[100:600, 50:750]  # inside the live view
    if len(np.unique(view.reshape(-1, 3)[::97], axis=0)) < 200:
        return "the view shows no picture yet"
    return None


def test_app_runs_in_a_real_x_window_and_quits_cleanly_on_sigterm(xserver, pack_dir, clip, tmp_path):
    env = {**os.environ, "DISPLAY": xserver, "QT_QPA_PLATFORM": "xcb"}
    out_dir = tmp_path / "out"
    cmd = [sys.executable, "-m", "ui.app", "--source", str(clip), "--loop", "--styles", str(pack_dir),
           "--style", "beta", "--settings", str(tmp_path / "settings.ini"), "--output-dir", str(out_dir)]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        # Poll: on a loaded machine the window, engines and first frames take a while.
        deadline, problem = time.monotonic() + 45, "no screenshot taken"
        while time.monotonic() < deadline:
            time.sleep(1.5)
            assert proc.poll() is None, f"the app exited early:\n{proc.stdout.read()}"
            img = screenshot(xserver, tmp_path / "screen.png")
            problem = _not_showing_video(img)
            if problem is None:
                break
        assert problem is None, problem
        if os.environ.get("STYLECAM_SCREENSHOT_DIR"):
            shutil.copy(tmp_path / "screen.png", Path(os.environ["STYLECAM_SCREENSHOT_DIR"]) / "xvfb-screen.png")
        proc.send_signal(signal.SIGTERM)  # like a logout: the window closes as with Ctrl+Q
        output, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, output
    assert "Traceback" not in output, output
    assert "backend: cpu" in output
