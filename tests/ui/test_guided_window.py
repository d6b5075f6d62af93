"""A guided style in the window: the status bar and the gallery tooltip say what steers it."""

from __future__ import annotations

import pytest

from tests.realtime.test_guide import _pack
from tests.ui.test_app import close, open_window

pytestmark = pytest.mark.timeout(60)


def test_status_bar_and_tooltip_say_the_default_map_steers_without_a_teacher(qtbot, clip, settings_path,
                                                                             tmp_path):
    packs = tmp_path / "packs"
    _pack(packs, tmp_path / "missing.pt")
    win = open_window(qtbot, packs, clip, settings_path, tmp_path / "out")
    try:
        want = "Look: default map (teacher missing.pt is unavailable"
        qtbot.waitUntil(lambda: want in win.guide_label.text(), timeout=20_000)
        assert "runs on its default map" in win.gallery.item(0).toolTip()
        assert want in win.gallery.item(0).toolTip()
    finally:
        close(qtbot, win)
