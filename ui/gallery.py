"""The style gallery: one thumbnail per style, numbered with its hotkey, metrics in the tooltip."""

from __future__ import annotations

import hashlib
import html
from pathlib import Path
from collections.abc import Sequence

from PyQt6.QtCore import QSize, Qt, pyqtSignal
from PyQt6.QtGui import QColor, QFont, QIcon, QImage, QPainter, QPixmap
from PyQt6.QtWidgets import QListView, QListWidget, QListWidgetItem, QWidget

from realtime.styles import StyleInfo

THUMB = QSize(88, 66)

# Metric keys ``training/heldout.py`` and ``training/evaluate.py`` write into pack.json, with how to show them; other keys
# are listed as they are.
_METRIC_LABELS = {
    "fidelity_gain": ("Fidelity to teacher", "{:.2f} (1 = same as teacher; 640×480, held-out pictures)"),
    "fidelity_gain_min": ("Fidelity on the worst picture", "{:.2f}"),
    "fidelity_gain_min_picture": ("Worst picture", "{}"),
    "psnr_vs_teacher": ("PSNR vs teacher", "{:.1f} dB"),
    "ssim_vs_teacher": ("SSIM vs teacher", "{:.3f}"),
    "ewarp_student": ("Flicker (warping error)", "{:.4f}"),
    "ewarp_teacher": ("Teacher's warping error", "{:.4f}"),
    "ewarp_input": ("Input's warping error", "{:.4f}"),
    "gmacs_640x480": ("Compute per 640×480 frame", "{:.2f} GMAC"),
    "teacher_gmacs_640x480": ("Teacher's compute", "{:.1f} GMAC"),
    "macs_ratio": ("Cheaper than teacher", "{:.0f}×"),
    "cpu_ms_640x480": ("CPU time per frame", "{:.1f} ms"),
    "cpu_threads": ("measured with threads", "{}"),
}


#: metrics too detailed for a tooltip (pack.json keeps them)
_DETAIL_METRICS = {"per_picture", "eval", "selection", "superseded_320x240"}


def style_tooltip(style: StyleInfo, guide_now: str | None = None) -> str:
    """Name, pack, hotkey, teacher, guide and measured metrics of ``style`` as a rich-text tooltip.

    ``guide_now``: what the guide of a guided style is doing now (the status bar's text)."""
    lines = [f"<b>{style.name}</b> <i>({style.pack})</i>"]
    if style.hotkey:
        lines.append(f"Hotkey: <b>{style.hotkey}</b>")
    teacher = style.teacher.get("name") if style.teacher else None
    if style.learned:
        lines.append(_learned_line(style.learned))
    elif teacher:
        lines.append(f"Teacher: {teacher}")
    for key, value in style.metrics.items():
        if key in _DETAIL_METRICS or isinstance(value, list):  # per-picture values and the like: pack.json has them
            continue
        label, fmt = _METRIC_LABELS.get(key, (key.replace("_", " "), "{}"))
        if isinstance(value, dict):  # a group of measurements (e.g. a known-answer benchmark): its numbers
            nums = {k: v for k, v in _flat(value).items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
            shown = ", ".join(f"{k.replace('_', ' ')} {v:.3g}" for k, v in nums.items()) or "—"
        else:
            try:
                shown = fmt.format(value)
            except (TypeError, ValueError):
                shown = str(value)
        lines.append(f"{label}: {shown}")
    if not style.metrics:
        lines.append("<i>no measured metrics in this pack</i>")
    g = style.guide
    if g is not None:
        w, h = g.keyframe
        lines.append(f"Guided: {g.teacher_name} looks at the scene at {w}×{h} every {g.cadence_ms / 1000:.1f} s "
                     f"or less often; without it the style runs on its default map")
        if guide_now:
            lines.append(f"<i>Now: {guide_now}</i>")
    return "<br>".join(lines)


def _learned_line(learned: dict) -> str:
    """Where a learned look came from: its style photos, how many, and how long it trained."""
    srcs = learned.get("style_photos") or []
    where = ", ".join(html.escape(Path(str(s)).name or str(s)) for s in srcs[:3]) + ("…" if len(srcs) > 3 else "")
    n = learned.get("style_photo_count")
    parts = [f"Learned from {n} photo{'s' if n != 1 else ''}" if n else "Learned from photos"]
    if where:
        parts.append(f"in {where}")
    if learned.get("steps"):
        parts.append(f"({learned['steps']} steps, {learned.get('minutes', 0):.1f} min)")
    if learned.get("monochrome"):
        parts.append("— black and white")
    return " ".join(parts)


def _flat(d: dict, prefix: str = "") -> dict:
    out: dict = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k} "))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _placeholder(style: StyleInfo) -> QImage:
    """A coloured tile with the style's initials for packs without a preview image."""
    digest = hashlib.sha1(style.key.encode()).digest()
    img = QImage(THUMB, QImage.Format.Format_RGB32)
    img.fill(QColor.fromHsv(digest[0] * 360 // 256, 120, 150))
    p = QPainter(img)
    font = QFont()
    font.setPixelSize(28)
    font.setBold(True)
    p.setFont(font)
    p.setPen(QColor(255, 255, 255))
    initials = "".join(w[0] for w in style.name.split()[:2]).upper() or "?"
    p.drawText(img.rect(), Qt.AlignmentFlag.AlignCenter, initials)
    p.end()
    return img


def style_thumbnail(style: StyleInfo) -> QPixmap:
    """The style's preview cropped to the thumbnail size, with its hotkey in the corner."""
    img = QImage(str(style.preview)) if style.preview else QImage()
    if img.isNull():
        img = _placeholder(style)
    img = img.scaled(THUMB, Qt.AspectRatioMode.KeepAspectRatioByExpanding,
                     Qt.TransformationMode.SmoothTransformation)
    x, y = (img.width() - THUMB.width()) // 2, (img.height() - THUMB.height()) // 2
    pix = QPixmap.fromImage(img.copy(x, y, THUMB.width(), THUMB.height()))
    if style.hotkey:
        p = QPainter(pix)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        p.setBrush(QColor(0, 0, 0, 190))
        p.setPen(Qt.PenStyle.NoPen)
        p.drawRoundedRect(3, 3, 20, 20, 5, 5)
        font = QFont()
        font.setPixelSize(14)
        font.setBold(True)
        p.setFont(font)
        p.setPen(QColor(255, 255, 255))
        p.drawText(3, 3, 20, 20, Qt.AlignmentFlag.AlignCenter, style.hotkey)
        p.end()
    return pix


class StyleGallery(QListWidget):
    """A grid of style thumbnails; clicking one emits :attr:`styleChosen` with the style's key."""

    styleChosen = pyqtSignal(str)

    def __init__(self, styles: Sequence[StyleInfo], parent: QWidget | None = None):
        super().__init__(parent)
        self.setViewMode(QListView.ViewMode.IconMode)
        self.setIconSize(THUMB)
        self.setResizeMode(QListView.ResizeMode.Adjust)
        self.setMovement(QListView.Movement.Static)
        self.setWrapping(True)
        self.setSpacing(4)
        self.setUniformItemSizes(True)
        self.setWordWrap(True)
        self.setGridSize(QSize(THUMB.width() + 12, THUMB.height() + 34))
        # Keys belong to the window's shortcuts (digits, arrows), not to list navigation.
        self.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self._keys: list[str] = []
        for style in styles:
            item = QListWidgetItem(QIcon(style_thumbnail(style)), style.name)
            item.setToolTip(style_tooltip(style))
            item.setData(Qt.ItemDataRole.UserRole, style.key)
            item.setTextAlignment(Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignTop)
            self.addItem(item)
            self._keys.append(style.key)
        self.itemClicked.connect(self._on_item_clicked)

    def set_guide_note(self, style: StyleInfo, text: str | None) -> None:
        """Refresh a guided style's tooltip with what its guide does now."""
        if style.key in self._keys:
            self.item(self._keys.index(style.key)).setToolTip(style_tooltip(style, text))

    def _on_item_clicked(self, item: QListWidgetItem) -> None:
        self.styleChosen.emit(item.data(Qt.ItemDataRole.UserRole))

    def fit_rows(self, max_rows: int = 2) -> None:
        """Make the gallery tall enough for up to ``max_rows`` rows at its current width."""
        cell = self.gridSize()
        per_row = max(1, (self.viewport().width() - 2) // cell.width())
        rows = min(max_rows, max(1, -(-self.count() // per_row)))
        self.setFixedHeight(rows * (cell.height() + 2 * self.spacing()) + 2 * self.frameWidth() + 4)

    def resizeEvent(self, event) -> None:  # noqa: N802 (Qt API)
        super().resizeEvent(event)
        self.fit_rows()

    def select_key(self, key: str) -> None:
        """Highlight the style ``key`` without emitting :attr:`styleChosen`."""
        if key in self._keys:
            self.blockSignals(True)
            self.setCurrentRow(self._keys.index(key))
            self.blockSignals(False)
