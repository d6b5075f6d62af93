"""The live view: paints the newest frame aspect-correct, plus the notice banner and the help overlay."""

from __future__ import annotations

import numpy as np
from PyQt6.QtCore import QRect, QRectF, QSize, Qt
from PyQt6.QtGui import QColor, QFont, QImage, QPainter, QPaintEvent
from PyQt6.QtWidgets import QSizePolicy, QWidget

from .hotkeys import help_rows


def bgr_to_qimage(frame: np.ndarray) -> QImage:
    """Wrap a BGR frame as a ``QImage`` without copying the pixels.

    The image borrows ``frame``'s memory, so the caller keeps ``frame`` alive (and unchanged)
    for as long as the image is used; :class:`VideoView` keeps both together.

    Shape:
        frame: ``(H, W, 3)`` uint8 BGR, rows contiguous.
    """
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 BGR frame, got {frame.shape} {frame.dtype}")
    if not frame.flags["C_CONTIGUOUS"]:
        frame = np.ascontiguousarray(frame)
    h, w = frame.shape[:2]
    return QImage(frame.data, w, h, frame.strides[0], QImage.Format.Format_BGR888)


def fit_rect(image: QSize, area: QRect) -> QRect:
    """The largest rectangle with ``image``'s aspect ratio centred in ``area``."""
    if image.isEmpty() or area.isEmpty():
        return QRect()
    scaled = image.scaled(area.size(), Qt.AspectRatioMode.KeepAspectRatio)
    x = area.x() + (area.width() - scaled.width()) // 2
    y = area.y() + (area.height() - scaled.height()) // 2
    return QRect(x, y, scaled.width(), scaled.height())


class VideoView(QWidget):
    """Shows the newest frame letter-boxed to the widget, a notice banner and the help overlay.

    The view only paints: :meth:`show_frame` stores the frame and schedules a repaint, so
    frames that arrive faster than the screen refreshes simply replace each other.
    """

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMinimumSize(320, 240)
        self.setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self._frame: np.ndarray | None = None  # keeps the QImage's memory alive
        self._image: QImage | None = None
        self.notice = ""
        self.notice_is_error = False
        self.help_visible = False
        self.painted_frames = 0

    def show_frame(self, frame: np.ndarray) -> None:
        """Make ``frame`` (``(H, W, 3)`` uint8 BGR, owned by the view from now on) the one painted next."""
        self._frame = frame
        self._image = bgr_to_qimage(frame)
        self.update()

    def current_image(self) -> QImage | None:
        """A copy of the frame on screen, or ``None`` before the first frame."""
        return self._image.copy() if self._image is not None else None

    def set_notice(self, text: str, error: bool = False) -> None:
        """Show ``text`` as a banner over the top of the view (``""`` hides it)."""
        self.notice, self.notice_is_error = text, error
        self.update()

    def set_help_visible(self, visible: bool) -> None:
        self.help_visible = visible
        self.update()

    def sizeHint(self) -> QSize:  # noqa: N802 (Qt API)
        return QSize(640, 480)

    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802 (Qt API)
        p = QPainter(self)
        try:
            p.fillRect(self.rect(), QColor(16, 16, 16))
            if self._image is not None:
                target = fit_rect(self._image.size(), self.rect())
                # Smooth filtering costs a few ms at large sizes; only pay it when shrinking,
                # where nearest-neighbour aliasing shows; enlarging looks fine without it.
                shrinking = target.width() < self._image.width()
                p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, shrinking)
                p.drawImage(target, self._image)
                self.painted_frames += 1
            else:
                p.setPen(QColor(200, 200, 200))
                p.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, "Starting…")
            if self.notice:
                self._paint_notice(p)
            if self.help_visible:
                self._paint_help(p)
        finally:
            p.end()

    def _paint_notice(self, p: QPainter) -> None:
        font = QFont(self.font())
        font.setPointSizeF(max(9.0, font.pointSizeF()))
        p.setFont(font)
        margin = 8
        box = QRect(margin, margin, self.width() - 2 * margin, 0)
        flags = Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap
        text_rect = p.boundingRect(box.adjusted(10, 6, -10, 0), flags, self.notice)
        box.setHeight(text_rect.height() + 12)
        bg = QColor(170, 30, 30, 220) if self.notice_is_error else QColor(0, 0, 0, 180)
        p.fillRect(box, bg)
        p.setPen(QColor(255, 255, 255))
        p.drawText(box.adjusted(10, 6, -10, -6), flags, self.notice)

    def _paint_help(self, p: QPainter) -> None:
        rows = help_rows()
        font = QFont(self.font())
        p.setFont(font)
        line = p.fontMetrics().height() + 4
        key_w = max(p.fontMetrics().horizontalAdvance(k) for k, _ in rows) + 24
        text_w = max(p.fontMetrics().horizontalAdvance(t) for _, t in rows) + 16
        w, h = key_w + text_w + 32, line * (len(rows) + 2) + 16
        box = QRectF((self.width() - w) / 2, (self.height() - h) / 2, w, h)
        p.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        p.setBrush(QColor(0, 0, 0, 200))
        p.setPen(Qt.PenStyle.NoPen)
        p.drawRoundedRect(box, 10, 10)
        x0, y = int(box.x()) + 16, int(box.y()) + 12
        bold = QFont(font)
        bold.setBold(True)
        p.setFont(bold)
        p.setPen(QColor(255, 255, 255))
        p.drawText(QRect(x0, y, int(w) - 32, line), Qt.AlignmentFlag.AlignLeft, "Keyboard shortcuts")
        y += line + 6
        for keys, text in rows:
            p.setFont(bold)
            p.setPen(QColor(255, 210, 120))
            p.drawText(QRect(x0, y, key_w, line), Qt.AlignmentFlag.AlignLeft, keys)
            p.setFont(font)
            p.setPen(QColor(235, 235, 235))
            p.drawText(QRect(x0 + key_w, y, text_w, line), Qt.AlignmentFlag.AlignLeft, text)
            y += line
