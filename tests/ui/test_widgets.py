"""The app's building blocks on their own: frame → QImage, letter-boxing, gallery, settings, hotkey table."""

from __future__ import annotations

import numpy as np
import pytest
from PyQt6.QtCore import QRect, QSettings, QSize
from PyQt6.QtGui import QColor, QKeySequence

from realtime.styles import StyleRegistry
from tests.ui.conftest import STYLES, private_settings
from ui.gallery import StyleGallery, style_tooltip
from ui.hotkeys import HOTKEYS, help_rows
from ui.view import VideoView, bgr_to_qimage, fit_rect


def test_qimage_wraps_bgr_pixels_in_the_right_order(qapp):
    frame = np.zeros((3, 5, 3), np.uint8)
    frame[1, 2] = (10, 20, 200)  # B, G, R
    img = bgr_to_qimage(frame)
    assert (img.width(), img.height()) == (5, 3)
    assert img.pixelColor(2, 1) == QColor(200, 20, 10)
    with pytest.raises(ValueError, match=r"\(H, W, 3\) uint8"):
        bgr_to_qimage(np.zeros((3, 5), np.uint8))
    # A non-contiguous view (a mirrored frame) is converted, not misread.
    mirrored = frame[:, ::-1]
    assert bgr_to_qimage(mirrored).pixelColor(2, 1) == QColor(200, 20, 10)


def test_fit_rect_keeps_the_aspect_ratio_and_centres():
    assert fit_rect(QSize(640, 480), QRect(0, 0, 1000, 480)) == QRect(180, 0, 640, 480)
    assert fit_rect(QSize(640, 480), QRect(0, 0, 320, 1000)) == QRect(0, 380, 320, 240)
    assert fit_rect(QSize(0, 0), QRect(0, 0, 10, 10)).isEmpty()


def test_view_paints_the_frame_letterboxed(qtbot):
    view = VideoView()
    qtbot.addWidget(view)
    view.resize(400, 400)
    frame = np.full((240, 320, 3), (0, 0, 255), np.uint8)  # red in BGR
    view.show_frame(frame)
    shot = view.grab().toImage()
    assert shot.pixelColor(200, 200) == QColor(255, 0, 0)  # the picture in the middle
    assert shot.pixelColor(200, 10) == QColor(16, 16, 16)  # a bar above it


def test_gallery_lists_styles_in_hotkey_order_with_metrics(qtbot, pack_dir):
    reg = StyleRegistry([pack_dir], include_user=False, include_shipped=False)
    gallery = StyleGallery(reg.styles)
    qtbot.addWidget(gallery)
    assert [gallery.item(i).text() for i in range(gallery.count())] == [s.title() for s in STYLES]
    assert "Hotkey: <b>2</b>" in gallery.item(1).toolTip()
    assert "Fidelity to teacher: 0.90" in gallery.item(1).toolTip()
    chosen = []
    gallery.styleChosen.connect(chosen.append)
    gallery.itemClicked.emit(gallery.item(2))
    assert chosen == ["testpack/gamma"]
    gallery.select_key("testpack/beta")
    assert gallery.currentRow() == 1 and chosen == ["testpack/gamma"]  # selecting does not re-emit


def test_tooltip_without_metrics_says_so(pack_dir):
    reg = StyleRegistry([pack_dir], include_user=False, include_shipped=False)
    style = reg.styles[0]
    style.metrics = {}
    assert "no measured metrics" in style_tooltip(style)


def test_settings_fall_back_to_defaults_on_damaged_values(tmp_path):
    path = tmp_path / "s.ini"
    store = QSettings(str(path), QSettings.Format.IniFormat)
    store.setValue("pipeline/strength", "lots")
    store.setValue("camera/size", "wide")
    store.setValue("pipeline/mirror", "true")
    store.sync()
    s = private_settings(path)
    assert s.strength is None and s.camera_size is None and s.mirror is True
    s.strength = 3.0  # clamped when read back
    s.camera_size = (1280, 720)
    assert s.strength == 1.0 and s.camera_size == (1280, 720)
    assert s.style is None and s.geometry is None


def test_every_hotkey_is_a_valid_key_sequence_and_listed_in_help():
    keys = [k for h in HOTKEYS for k in h.keys]
    assert len(keys) == len(set(keys)), "a key is bound twice"
    for k in keys:
        assert not QKeySequence(k).isEmpty(), k
    rows = dict(help_rows())
    for needed in ("R", "S", "B", "F", "M", "V", "Space", "Esc", "Ctrl+Q", "H or ?"):
        assert needed in rows


def test_tooltip_shows_the_worst_picture_not_the_per_picture_table(pack_dir):
    reg = StyleRegistry([pack_dir], include_user=False, include_shipped=False)
    style = reg.styles[0]
    style.metrics = {"fidelity_gain": 0.81, "fidelity_gain_min": 0.7, "fidelity_gain_min_picture": "clock",
                     "per_picture": {"clock": 0.7, "faust": 0.9}, "selection": {"fidelity_gain": 0.83}}
    tip = style_tooltip(style)
    assert "Fidelity to teacher: 0.81" in tip and "Fidelity on the worst picture: 0.70" in tip
    assert "Worst picture: clock" in tip and "faust" not in tip and "selection" not in tip
