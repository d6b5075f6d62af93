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


def smoothstep_alpha(mask: np.ndarray, size: tuple[int, int], threshold: float, feather: float,
                     out: np.ndarray | None = None, tmp: np.ndarray | None = None) -> np.ndarray:
    """Upsample a low-res person mask and turn it into a feathered alpha.

    The smoothstep's affine step ``(m - lo) / (2 feather)`` commutes with bilinear sampling, so it
    runs on the small mask; the full-resolution work is one resize, a clamp and the cubic, all
    OpenCV calls writing into ``out`` (a fresh 720p float array costs more in page faults than the
    arithmetic, so the pipeline passes reused buffers).

    Args:
        mask: ``(h, w)`` float32 person probability in [0, 1].
        size: output ``(W, H)``.
        out, tmp: optional ``(H, W)`` float32 buffers to write into (``out`` is returned).

    Returns:
        ``(H, W)`` float32 alpha in [0, 1].
    """
    W, H = size
    out = out if out is not None else np.empty((H, W), np.float32)
    mask = np.asarray(mask, np.float32)
    if feather <= 0:  # the hard step m >= threshold, i.e. m > the float just below threshold
        cv2.resize(mask, size, dst=out, interpolation=cv2.INTER_LINEAR)
        below = float(np.nextafter(np.float32(threshold), np.float32(-1)))
        cv2.threshold(out, below, 1.0, cv2.THRESH_BINARY, dst=out)
        return out
    lo, k = threshold - feather, 1.0 / (2.0 * feather)
    cv2.resize((mask - np.float32(lo)) * np.float32(k), size, dst=out, interpolation=cv2.INTER_LINEAR)
    cv2.threshold(out, 1.0, 1.0, cv2.THRESH_TRUNC, dst=out)  # t = clamp(., 0, 1)
    cv2.threshold(out, 0.0, 0.0, cv2.THRESH_TOZERO, dst=out)
    tmp = tmp if tmp is not None else np.empty_like(out)
    cv2.addWeighted(out, -2.0, out, 0.0, 3.0, dst=tmp)  # 3 - 2t
    cv2.multiply(out, out, dst=out)
    cv2.multiply(out, tmp, dst=out)  # t * t * (3 - 2t)
    return out


BLUR_EPS = 1e-4  # denominator floor of the masked blur, as in kernels.reference


def blur_scale(width: int, sigma: float) -> int:
    """Downscale factor of the background blur: 4, or 8 once the blur spans 3 px or more at 1/8.

    A wide Gaussian loses nothing at low resolution, and at 720p a 1/4-scale blur costs more than
    the rest of compositing; sigma 12 (of a 640-wide frame) is 3 px at 1/4 of 640 and at 1/8 of 1280.
    """
    s = sigma * (width / 640.0)
    return 8 if s / 8 >= 3.0 else 4


def masked_blur_small(frame: np.ndarray, weight_low: np.ndarray, sigma: float,
                      scale: int | None = None) -> np.ndarray:
    """The background blur of :func:`masked_blur` at ``1/scale`` resolution (compositing upsamples it).

    Returns:
        ``(H / scale, W / scale, 3)`` uint8 BGR.
    """
    H, W = frame.shape[:2]
    scale = scale or blur_scale(W, sigma)
    sw, sh = max(1, W // scale), max(1, H // scale)
    small = cv2.resize(frame, (sw, sh), interpolation=cv2.INTER_AREA)
    w = cv2.resize(np.asarray(weight_low, np.float32), (sw, sh), interpolation=cv2.INTER_LINEAR)
    np.maximum(w, 0.0, out=w)
    # One 4-channel blur of (img·w, w) instead of separate blurs of the numerator and the denominator.
    stack = np.empty((sh, sw, 4), np.float32)
    np.multiply(small, w[:, :, None], out=stack[:, :, :3])
    stack[:, :, 3] = w
    s = max(0.5, sigma * (W / 640.0) / scale)
    cv2.GaussianBlur(stack, (0, 0), s, dst=stack, borderType=cv2.BORDER_REPLICATE)
    # Neighbourhoods that are all person come out black, as in kernels.reference.masked_blur: the
    # person treatment covers them (alpha is 1 wherever the weight around is 0).
    out = stack[:, :, :3] / np.maximum(stack[:, :, 3:], np.float32(BLUR_EPS))
    return cv2.convertScaleAbs(out)  # round and saturate to uint8


def masked_blur(frame: np.ndarray, weight_low: np.ndarray, sigma: float, scale: int | None = None) -> np.ndarray:
    """Blur the background without the person's colours bleeding in.

    Computed at ``1/scale`` resolution (a wide blur loses nothing there; see :func:`blur_scale`) as
    ``G*(img·w) / G*w`` with ``w`` the background weight, then upsampled.

    Args:
        frame: ``(H, W, 3)`` uint8 BGR.
        weight_low: ``(h, w)`` float32 background weight in [0, 1] (``1 - mask``), any size.
        sigma: blur sigma in pixels of a 640-wide frame.

    Returns:
        ``(H, W, 3)`` uint8 BGR.
    """
    H, W = frame.shape[:2]
    return cv2.resize(masked_blur_small(frame, weight_low, sigma, scale), (W, H), interpolation=cv2.INTER_LINEAR)


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
    _scratch: dict = field(default_factory=dict)

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
        """``orig + strength * (alpha*person + (1-alpha)*background - orig)`` as a new uint8 BGR array.

        Args:
            frame, person, background: ``(H, W, 3)`` uint8 BGR.
            alpha: ``(H, W)`` float32 person alpha, or ``None`` when both regions are the same.
        """
        if alpha is None:
            out = person.copy() if strength >= 0.999 else None
        else:
            beta = self._buf("beta", alpha.shape, np.float32)
            cv2.subtract(1.0, alpha, dst=beta)
            out = cv2.blendLinear(person, background, alpha, beta)
        if strength >= 0.999:
            return out
        src = person if out is None else out
        return cv2.addWeighted(src, float(strength), frame, 1.0 - float(strength), 0.0, dst=out)

    def composite(self, frame: np.ndarray, mask: np.ndarray | None, fg: Layer, bg: Layer,
                  strength: float) -> np.ndarray:
        """Render both layers at the frame's size and blend them by the feathered mask.

        The CPU counterpart of ``kernels.reference.composite``: a ``delta`` layer is the frame plus
        the upsampled change (rounded and saturated to uint8 first, where the reference keeps
        float), an ``image`` layer is sampled bilinearly. Full-resolution intermediates live in
        buffers reused from frame to frame; only the returned frame is new.

        Args:
            frame: ``(H, W, 3)`` uint8 BGR, the original.
            mask: ``(h, w)`` float32 person probability, or ``None`` for one region (``fg`` everywhere).
            fg, bg: the person's and the background's layer.
            strength: mix with the original, in [0, 1].

        Returns:
            ``(H, W, 3)`` uint8 BGR, a new array.
        """
        H, W = frame.shape[:2]
        p_img = self._render(frame, fg, "fg")
        if mask is None:
            return self.blend(frame, p_img, p_img, None, strength)
        b_img = self._render(frame, bg, "bg")
        alpha = smoothstep_alpha(mask, (W, H), self.threshold, self.feather,
                                 out=self._buf("alpha", (H, W), np.float32), tmp=self._buf("tmp", (H, W), np.float32))
        return self.blend(frame, p_img, b_img, alpha, strength)

    def _buf(self, name: str, shape: tuple[int, ...], dtype) -> np.ndarray:
        b = self._scratch.get(name)
        if b is None or b.shape != tuple(shape) or b.dtype != dtype:
            b = self._scratch[name] = np.empty(shape, dtype)
        return b

    def _render(self, frame: np.ndarray, layer: Layer, slot: str) -> np.ndarray:
        """A layer as ``(H, W, 3)`` uint8 BGR; the result may be a reused buffer or ``frame`` itself."""
        H, W = frame.shape[:2]
        if layer.mode == "original":
            return frame
        if layer.mode == "delta":
            d16 = self._buf(slot + "16", (H, W, 3), np.int16)
            small = np.rint(layer.data * np.float32(255.0)).astype(np.int16)
            if small.shape[:2] == (H, W):
                d16[...] = small
            else:
                cv2.resize(small, (W, H), dst=d16, interpolation=cv2.INTER_LINEAR)
            return cv2.add(frame, d16, dst=self._buf(slot, (H, W, 3), np.uint8), dtype=cv2.CV_8U)
        img = layer.data
        if img.shape[:2] == (H, W):
            return img
        return cv2.resize(img, (W, H), dst=self._buf(slot, (H, W, 3), np.uint8), interpolation=cv2.INTER_LINEAR)


@dataclass(frozen=True)
class Layer:
    """One region's treatment ready to composite.

    Attributes:
        mode: ``original`` (the frame), ``delta`` (the frame plus a style change) or ``image``.
        data: ``delta``: ``(h, w, 3)`` float32 BGR change in 0..1 units at any size;
            ``image``: ``(h, w, 3)`` uint8 BGR at any size (sampled bilinearly); ``original``: None.
    """

    mode: str
    data: np.ndarray | None = None
