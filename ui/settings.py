"""What the app remembers between runs, stored with ``QSettings``.

All reads go through typed accessors that fall back to defaults when a value is missing or was
written by another version, so a damaged settings file can never stop the app from starting.
"""

from __future__ import annotations

from pathlib import Path

from PyQt6.QtCore import QByteArray, QSettings, QStandardPaths

ORGANIZATION = "stylecam"
APPLICATION = "stylecam"


def default_settings() -> QSettings:
    """The user's own settings store (native format, per user)."""
    return QSettings(ORGANIZATION, APPLICATION)


def default_output_dir() -> Path:
    """``<the user's videos folder>/stylecam`` (``~/Videos/stylecam`` on most Linux desktops)."""
    movies = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.MoviesLocation)
    base = Path(movies) if movies else Path.home() / "Videos"
    return base / "stylecam"


class AppSettings:
    """Typed access to the keys the app stores.

    Args:
        store: where values live; tests pass an INI file in a temporary folder.
    """

    def __init__(self, store: QSettings):
        self.store = store

    def _get(self, key: str, default, kind):
        value = self.store.value(key, default)
        try:
            if kind is bool and isinstance(value, str):  # INI files store booleans as text
                return value.lower() in ("1", "true", "yes")
            return kind(value) if value is not None else default
        except (TypeError, ValueError):
            return default

    # Each property maps one key; ``None`` means "not set" and lets the caller choose.
    @property
    def style(self) -> str | None:
        return self._get("pipeline/style", None, str) or None

    @style.setter
    def style(self, key: str | None) -> None:
        self.store.setValue("pipeline/style", key or "")

    @property
    def preset(self) -> str | None:
        return self._get("pipeline/preset", None, str) or None

    @preset.setter
    def preset(self, name: str | None) -> None:
        self.store.setValue("pipeline/preset", name or "")

    @property
    def person(self) -> str | None:
        return self._get("pipeline/person", None, str) or None

    @person.setter
    def person(self, spec: str | None) -> None:
        self.store.setValue("pipeline/person", spec or "")

    @property
    def background(self) -> str | None:
        return self._get("pipeline/background", None, str) or None

    @background.setter
    def background(self, spec: str | None) -> None:
        self.store.setValue("pipeline/background", spec or "")

    @property
    def strength(self) -> float | None:
        v = self._get("pipeline/strength", None, float)
        return min(1.0, max(0.0, v)) if v is not None else None

    @strength.setter
    def strength(self, value: float) -> None:
        self.store.setValue("pipeline/strength", float(value))

    @property
    def mirror(self) -> bool | None:
        return self._get("pipeline/mirror", None, bool)

    @mirror.setter
    def mirror(self, value: bool) -> None:
        self.store.setValue("pipeline/mirror", bool(value))

    @property
    def camera(self) -> str | None:
        """The last camera picked (its index as text); files and images are not remembered."""
        return self._get("camera/source", None, str) or None

    @camera.setter
    def camera(self, spec: str | None) -> None:
        self.store.setValue("camera/source", spec or "")

    @property
    def camera_size(self) -> tuple[int, int] | None:
        text = self._get("camera/size", "", str)
        try:
            w, h = (int(v) for v in text.lower().split("x"))
            return (w, h) if w > 0 and h > 0 else None
        except ValueError:
            return None

    @camera_size.setter
    def camera_size(self, size: tuple[int, int] | None) -> None:
        self.store.setValue("camera/size", f"{size[0]}x{size[1]}" if size else "")

    @property
    def camera_fps(self) -> float | None:
        v = self._get("camera/fps", None, float)
        return v if v and v > 0 else None

    @camera_fps.setter
    def camera_fps(self, fps: float | None) -> None:
        self.store.setValue("camera/fps", float(fps or 0))

    @property
    def output_dir(self) -> Path | None:
        text = self._get("output/dir", "", str)
        return Path(text) if text else None

    @output_dir.setter
    def output_dir(self, path: Path | None) -> None:
        self.store.setValue("output/dir", str(path) if path else "")

    @property
    def geometry(self) -> QByteArray | None:
        v = self.store.value("window/geometry")
        return v if isinstance(v, QByteArray) and not v.isEmpty() else None

    @geometry.setter
    def geometry(self, data: QByteArray) -> None:
        self.store.setValue("window/geometry", data)

    @property
    def window_state(self) -> QByteArray | None:
        v = self.store.value("window/state")
        return v if isinstance(v, QByteArray) and not v.isEmpty() else None

    @window_state.setter
    def window_state(self, data: QByteArray) -> None:
        self.store.setValue("window/state", data)

    def sync(self) -> None:
        self.store.sync()
