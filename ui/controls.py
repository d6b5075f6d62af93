"""Side-panel control groups: regions (person / background treatments and presets) and camera picker.

They only describe what the user chose (as treatment strings such as ``"blur:12"`` and
:class:`~ui.worker.SourceRequest` values) and emit signals; the window forwards them to the worker.
"""

from __future__ import annotations

from pathlib import Path

from PyQt6.QtCore import Qt, pyqtSignal
from PyQt6.QtGui import QColor
from PyQt6.QtWidgets import (
    QColorDialog,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSlider,
    QWidget,
)

from .worker import SourceRequest

# (label, treatment kind as Treatment.parse understands it); image and colour carry their value.
REGION_KINDS = [("Style", "style"), ("Next style", "style:@next"), ("Original", "original"),
                ("Blur", "blur"), ("Image…", "image"), ("Colour…", "color")]
CUSTOM = "custom"
CAMERA_SIZES = [(640, 480), (1280, 720), (1920, 1080)]
CAMERA_FPS = [15, 30, 60]


def _kind_index(spec: str) -> int:
    """Row of ``spec`` (a treatment string) in :data:`REGION_KINDS`."""
    spec = spec.strip().lower()
    if spec.startswith("style:@next"):
        return 1
    head = spec.split(":", 1)[0]
    if head == "colour":
        head = "color"
    for i, (_, kind) in enumerate(REGION_KINDS):
        if kind == head:
            return i
    return 0


class RegionControls(QGroupBox):
    """Preset picker, person / background treatment pickers and the background options.

    Emits :attr:`presetChosen` for a preset and :attr:`regionsChanged` (person, background
    treatment strings) for any manual change.
    """

    presetChosen = pyqtSignal(str)
    regionsChanged = pyqtSignal(str, str)

    def __init__(self, presets: list[str], parent: QWidget | None = None):
        super().__init__("Regions", parent)
        self._blur = 12.0
        self._image: str | None = None
        self._color = QColor(0, 177, 64)
        self._presets = list(presets)

        self.preset = QComboBox()
        self.preset.addItems(self._presets + [CUSTOM])
        self.preset.setToolTip("B cycles the presets")
        self.person = QComboBox()
        self.background = QComboBox()
        for combo in (self.person, self.background):
            for label, kind in REGION_KINDS:
                combo.addItem(label, kind)
        self.blur = QSlider(Qt.Orientation.Horizontal)
        self.blur.setRange(1, 50)
        self.blur.setValue(int(self._blur))
        self.blur.setToolTip("Background blur strength")
        self.image_button = QPushButton("Image…")
        self.blur.setMinimumWidth(60)
        self.image_button.setToolTip("Pick a background image")
        self.color_button = QPushButton("Colour…")
        self.color_button.setToolTip("Pick a background colour")
        for w in (self.preset, self.person, self.background, self.blur, self.image_button, self.color_button):
            w.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # keys belong to the window's shortcuts

        opts = QHBoxLayout()
        opts.addWidget(self.blur, 1)
        opts.addWidget(self.image_button)
        opts.addWidget(self.color_button)
        form = QFormLayout(self)
        form.addRow("Preset", self.preset)
        form.addRow("Person", self.person)
        form.addRow("Background", self.background)
        form.addRow("Blur", opts)

        self.preset.activated.connect(self._on_preset)
        self.person.activated.connect(self._on_person_kind)
        self.background.activated.connect(self._on_background_kind)
        self.blur.sliderReleased.connect(self._on_blur)
        self.image_button.clicked.connect(self._pick_image)
        self.color_button.clicked.connect(self._pick_color)

    # -------------------------------------------------------------------------- state
    def spec(self, combo: QComboBox) -> str:
        """The treatment string the combo stands for, with the current option values."""
        kind = combo.currentData()
        if kind == "blur":
            return f"blur:{self._blur:g}"
        if kind == "image":
            return f"image:{self._image}" if self._image else "original"
        if kind == "color":
            return "color:%s" % self._color.name()
        return kind

    def current(self) -> tuple[str, str]:
        return self.spec(self.person), self.spec(self.background)

    def show_regions(self, person: str, background: str, preset: str | None) -> None:
        """Reflect treatments chosen elsewhere (a preset, saved settings) without emitting."""
        for combo, spec in ((self.person, person), (self.background, background)):
            kind, _, arg = spec.partition(":")
            if kind == "blur" and arg:
                self._blur = float(arg)
                self.blur.setValue(int(round(self._blur)))
            elif kind == "image" and arg:
                self._image = arg
            elif kind in ("color", "colour") and arg:
                self._color = QColor(arg if arg.startswith("#") else "#" + arg)
            combo.setCurrentIndex(_kind_index(spec))
        self.preset.setCurrentText(preset if preset in self._presets else CUSTOM)

    def current_preset(self) -> str | None:
        text = self.preset.currentText()
        return text if text in self._presets else None

    # -------------------------------------------------------------------------- reactions
    def _on_preset(self, _index: int) -> None:
        name = self.preset.currentText()
        if name in self._presets:
            self.presetChosen.emit(name)
        else:
            self.regionsChanged.emit(*self.current())

    def _on_person_kind(self, _index: int) -> None:
        self._on_kind(self.person)

    def _on_background_kind(self, _index: int) -> None:
        self._on_kind(self.background)

    def _on_kind(self, combo: QComboBox) -> None:
        kind = combo.currentData()
        if kind == "image" and not self._image and not self._pick_image(emit=False):
            combo.setCurrentIndex(_kind_index("original"))
        if kind == "color":
            self._pick_color(emit=False)  # cancelled: keeps the last colour
        self.preset.setCurrentText(CUSTOM)
        self.regionsChanged.emit(*self.current())

    def _on_blur(self) -> None:
        self._blur = float(self.blur.value())
        if self.background.currentData() != "blur" and self.person.currentData() != "blur":
            self.background.setCurrentIndex(_kind_index("blur"))
            self.preset.setCurrentText(CUSTOM)
        self.regionsChanged.emit(*self.current())

    def _pick_image(self, emit: bool = True) -> bool:
        path, _ = QFileDialog.getOpenFileName(self, "Background image", str(Path.home()),
                                              "Images (*.png *.jpg *.jpeg *.bmp *.webp)")
        if not path:
            return False
        self._image = path
        if emit:
            self.background.setCurrentIndex(_kind_index("image"))
            self.preset.setCurrentText(CUSTOM)
            self.regionsChanged.emit(*self.current())
        return True

    def _pick_color(self, emit: bool = True) -> bool:
        color = QColorDialog.getColor(self._color, self, "Background colour")
        if not color.isValid():
            return False
        self._color = color
        if emit:
            self.background.setCurrentIndex(_kind_index("color"))
            self.preset.setCurrentText(CUSTOM)
            self.regionsChanged.emit(*self.current())
        return True


class CameraControls(QGroupBox):
    """Pick the source: a camera (with resolution and fps), the demo clip or a file."""

    sourceChosen = pyqtSignal(object)  # SourceRequest
    refreshRequested = pyqtSignal()

    def __init__(self, demo_clip: Path | None, parent: QWidget | None = None):
        super().__init__("Camera", parent)
        self._demo = demo_clip
        self.device = QComboBox()
        self.size = QComboBox()
        for w, h in CAMERA_SIZES:
            self.size.addItem(f"{w}×{h}", (w, h))
        self.fps = QComboBox()
        for f in CAMERA_FPS:
            self.fps.addItem(f"{f} fps", f)
        self.fps.setCurrentIndex(CAMERA_FPS.index(30))
        self.refresh = QPushButton("↻")
        self.refresh.setToolTip("Look for cameras again")
        self.refresh.setFixedWidth(32)
        self.apply = QPushButton("Use")
        self.open_file = QPushButton("File…")
        self.current = QLabel("")
        self.current.setWordWrap(True)
        self.current.setStyleSheet("color: palette(mid);")
        for w in (self.device, self.size, self.fps, self.refresh, self.apply, self.open_file):
            w.setFocusPolicy(Qt.FocusPolicy.NoFocus)

        row = QHBoxLayout()
        row.addWidget(self.device, 1)
        row.addWidget(self.refresh)
        row.addWidget(self.open_file)
        fmt = QHBoxLayout()
        fmt.addWidget(self.size, 1)
        fmt.addWidget(self.fps, 1)
        fmt.addWidget(self.apply)
        form = QFormLayout(self)
        form.addRow("Device", row)
        form.addRow("Format", fmt)
        form.addRow(self.current)
        self.set_cameras([])

        self.refresh.clicked.connect(self.refreshRequested)
        self.apply.clicked.connect(self._emit_choice)
        self.open_file.clicked.connect(self._pick_file)

    def set_cameras(self, indices: list[int]) -> None:
        """Fill the device list: the cameras found, then the demo clip."""
        keep = self.device.currentData()
        self.device.clear()
        for i in indices:
            self.device.addItem(f"Camera {i}", str(i))
        if self._demo is not None:
            self.device.addItem("Demo clip", "demo")
        self.device.setPlaceholderText("no camera found")
        self.device.setToolTip("" if indices else "No camera found; plug one in and press ↻")
        row = self.device.findData(keep)
        if row >= 0:
            self.device.setCurrentIndex(row)

    def select(self, spec: str | None, size: tuple[int, int] | None, fps: float | None) -> None:
        """Show a saved choice in the pickers."""
        row = self.device.findData(spec)
        if row >= 0:
            self.device.setCurrentIndex(row)
        if size is not None:
            row = self.size.findData(tuple(size))
            if row < 0:
                self.size.addItem(f"{size[0]}×{size[1]}", tuple(size))
                row = self.size.count() - 1
            self.size.setCurrentIndex(row)
        if fps:
            row = self.fps.findData(int(round(fps)))
            if row >= 0:
                self.fps.setCurrentIndex(row)

    def request(self) -> SourceRequest:
        data = self.device.currentData()
        size, fps = self.size.currentData(), float(self.fps.currentData())
        if data == "demo" and self._demo is not None:
            return SourceRequest(str(self._demo), size=None, fps=None, loop=True)
        return SourceRequest(data, size=size, fps=fps)

    def _emit_choice(self) -> None:
        if self.device.currentData() is not None:
            self.sourceChosen.emit(self.request())

    def _pick_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Video or image", str(Path.home()),
                                              "Video and images (*.mp4 *.mkv *.mov *.avi *.webm *.png *.jpg "
                                              "*.jpeg *.bmp);;All files (*)")
        if path:
            self.sourceChosen.emit(SourceRequest(path, size=None, fps=None, loop=True))
