"""Region treatments and the CPU compositor (OpenCV/numpy).

Each region — the person and the background — gets one :class:`Treatment`: the original
pixels, a style, a blur, an image (scaled to cover) or a flat colour. The compositor turns a
low-resolution person mask into a feathered alpha and blends the two treated frames in a
few OpenCV calls. The maths matches ``kernels.reference.composite`` (the spec of the GPU
kernel):

    alpha = smoothstep(threshold - feather, threshold + feather, bilinear(mask))
    out   = orig + strength * (alpha * person + (1 - alpha) * background - orig)

A threshold below 0.5 moves the edge outward so hair survives.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from .errors import InputError

KINDS = ("original", "style", "blur", "image", "color")


@dataclass(frozen=True)
class Treatment:
    """What a region shows.

    Attributes:
        kind: one of ``original``, ``style``, ``blur``, ``image``, ``color``.
        style: style key for ``style`` (``None`` = the pipeline's current style).
        blur: Gaussian sigma in pixels of a 640-wide frame, for ``blur``.
        image: path for ``image``.
        color: RGB for ``color``.
    """

    kind: str = "style"
    style: str | None = None
    blur: float = 12.0
    image: str | None = None
    color: tuple[int, int, int] = (0, 177, 64)

    @classmethod
    def parse(cls, text: str, flag: str = "--person") -> "Treatment":
        """Parse ``original``, ``style[:NAME]``, ``blur[:SIGMA]``, ``image:PATH``, ``color:#RRGGBB``."""
        kind, _, arg = text.strip().partition(":")
        kind = kind.lower()
        if kind in ("colour",):
            kind = "color"
        if kind not in KINDS:
            raise InputError(f"{flag} {text!r}: expected one of original, style[:NAME], blur[:SIGMA], "
                             f"image:PATH, color:#RRGGBB")
        if kind == "original":
            return cls("original")
        if kind == "style":
            return cls("style", style=arg or None)
        if kind == "blur":
            try:
                sigma = float(arg) if arg else 12.0
            except ValueError:
                sigma = -1.0
            if not 0.5 <= sigma <= 100:
                raise InputError(f"{flag} {text!r}: blur strength must be a number from 0.5 to 100")
            return cls("blur", blur=sigma)
        if kind == "image":
            if not arg:
                raise InputError(f"{flag} {text!r}: expected image:PATH")
            if not Path(arg).is_file():
                raise InputError(f"{flag} {text!r}: no such image file {arg}")
            if cv2.imread(arg, cv2.IMREAD_COLOR) is None:
                raise InputError(f"{flag} {text!r}: {arg} is not an image OpenCV can read")
            return cls("image", image=arg)
        m = re.fullmatch(r"#?([0-9a-fA-F]{6})", arg) if arg else None
        if not m:
            raise InputError(f"{flag} {text!r}: expected color:#RRGGBB")
        h = m.group(1)
        return cls("color", color=(int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16)))

    def __str__(self) -> str:
        if self.kind == "style":
            return f"style:{self.style}" if self.style else "style"
        if self.kind == "blur":
            return f"blur:{self.blur:g}"
        if self.kind == "image":
            return f"image:{self.image}"
        if self.kind == "color":
            return "color:#%02x%02x%02x" % self.color
        return "original"


# Presets name (person, background) pairs; "split" puts a second style on the background.
PRESETS: dict[str, tuple[Treatment, Treatment]] = {
    "all": (Treatment("style"), Treatment("style")),
    "person": (Treatment("style"), Treatment("original")),
    "background": (Treatment("original"), Treatment("style")),
    "split": (Treatment("style"), Treatment("style", style="@next")),
    "blur": (Treatment("style"), Treatment("blur")),
}


def smoothstep_alpha(mask: np.ndarray, size: tuple[int, int], threshold: float, feather: float) -> np.ndarray:
    """Upsample a low-res person mask and turn it into a feathered alpha.

    Args:
        mask: ``(h, w)`` float32 person probability in [0, 1].
        size: output ``(W, H)``.

    Returns:
        ``(H, W)`` float32 alpha in [0, 1].
    """
    m = cv2.resize(mask, size, interpolation=cv2.INTER_LINEAR)
    if feather <= 0:
        return (m >= threshold).astype(np.float32)
    lo = threshold - feather
    t = np.clip((m - lo) * (1.0 / (2.0 * feather)), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def masked_blur(frame: np.ndarray, weight_low: np.ndarray, sigma: float, scale: int = 4) -> np.ndarray:
    """Blur the background without the person's colours bleeding in.

    Computed at ``1/scale`` resolution (a wide blur loses nothing there) as
    ``G*(img·w) / G*w`` with ``w`` the background weight, then upsampled.

    Args:
        frame: ``(H, W, 3)`` uint8 BGR.
        weight_low: ``(h, w)`` float32 background weight in [0, 1] (``1 - mask``), any size.
        sigma: blur sigma in pixels of a 640-wide frame.

    Returns:
        ``(H, W, 3)`` uint8 BGR.
    """
    H, W = frame.shape[:2]
    sw, sh = max(1, W // scale), max(1, H // scale)
    small = cv2.resize(frame, (sw, sh), interpolation=cv2.INTER_AREA).astype(np.float32)
    w = cv2.resize(weight_low, (sw, sh), interpolation=cv2.INTER_LINEAR)
    w = np.maximum(w, 0.0)[:, :, None]
    s = max(0.5, sigma * (W / 640.0) / scale)
    num = cv2.GaussianBlur(small * w, (0, 0), s, borderType=cv2.BORDER_REPLICATE)
    den = cv2.GaussianBlur(w, (0, 0), s, borderType=cv2.BORDER_REPLICATE)
    if den.ndim == 2:
        den = den[:, :, None]
    # Where no background is near (deep inside the person) fall back to a plain blur.
    plain = cv2.GaussianBlur(small, (0, 0), s, borderType=cv2.BORDER_REPLICATE)
    out = np.where(den > 1e-3, num / np.maximum(den, 1e-6), plain)
    return cv2.resize(np.clip(out, 0, 255).astype(np.uint8), (W, H), interpolation=cv2.INTER_LINEAR)


@dataclass
class _ImageCache:
    path: str | None = None
    size: tuple[int, int] | None = None
    image: np.ndarray | None = None


def cover_resize(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Scale ``img`` to cover ``size=(W, H)`` and centre-crop (no stretching)."""
    W, H = size
    h, w = img.shape[:2]
    s = max(W / w, H / h)
    nw, nh = max(W, round(w * s)), max(H, round(h * s))
    r = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
    x0, y0 = (nw - W) // 2, (nh - H) // 2
    return np.ascontiguousarray(r[y0:y0 + H, x0:x0 + W])


@dataclass
class Compositor:
    """Blend two treated frames with a feathered person alpha, then mix with the original.

    Attributes:
        threshold: mask value where the edge sits (below 0.5 = outward, keeps hair).
        feather: half-width of the soft edge in mask units.
    """

    threshold: float = 0.4
    feather: float = 0.15
    _images: dict = field(default_factory=dict)

    def flat(self, t: Treatment, frame: np.ndarray) -> np.ndarray:
        """Render a treatment that needs no network: original, image or colour (uint8 BGR)."""
        H, W = frame.shape[:2]
        if t.kind == "original":
            return frame
        if t.kind == "color":
            r, g, b = t.color
            return np.full((H, W, 3), (b, g, r), np.uint8)
        if t.kind == "image":
            c = self._images.get(t.image) or _ImageCache()
            if c.path != t.image or c.size != (W, H):
                img = cv2.imread(str(t.image), cv2.IMREAD_COLOR)
                if img is None:
                    raise InputError(f"background image {t.image}: cannot be read")
                c = _ImageCache(t.image, (W, H), cover_resize(img, (W, H)))
                self._images[t.image] = c
            return c.image
        raise ValueError(f"treatment {t} needs the pipeline to render it")

    def blend(self, frame: np.ndarray, person: np.ndarray, background: np.ndarray,
              alpha: np.ndarray | None, strength: float) -> np.ndarray:
        """``orig + strength * (alpha*person + (1-alpha)*background - orig)`` as uint8 BGR.

        Args:
            frame, person, background: ``(H, W, 3)`` uint8 BGR.
            alpha: ``(H, W)`` float32 person alpha, or ``None`` when both regions are the same.
        """
        if alpha is None:
            out = person
        else:
            out = cv2.blendLinear(person, background, alpha, 1.0 - alpha)
        if strength >= 0.999:
            return out if out is not frame else frame.copy()
        return cv2.addWeighted(out, float(strength), frame, 1.0 - float(strength), 0.0)
