"""LUT packs in the live pipeline: the weights from a thumbnail, refreshed every few frames and
blended over time; one table per frame for the whole style mix; applied to every full-resolution pixel.

The stylizer hands a mix to :func:`stylize` when any of its packs is a LUT pack. Styles of LUT packs
blend as LUTs (exact: trilinear interpolation is linear in the table); when a mix also holds CIN
styles (a cross-fade between a LUT look and a painting), their upsampled change is added with its
weight, as the stylizer adds the changes of several CIN packs.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

import cv2
import numpy as np
import torch

from .lut import THUMB, LutNet, LutTable, apply_lut

if TYPE_CHECKING:
    from .styles import StylePack
    from .stylizer import Mix, Stylizer

REFRESH_EVERY = 2  # frames between weight predictions
BLEND = 0.5  # weight of a new prediction in the running average
SCENE_CUT = 0.12  # mean absolute thumbnail change (0..1) that resets the average


class NumpyWeights:
    """The thumbnail CNN and LUT blend of a :class:`LutNet` in numpy, for the live CPU path.

    The network is tiny (four 3×3 stride-2 convolutions on 32×32); run by torch between frames its
    thread pool wakes and spins on a busy CPU (measured 12 ms per convolution beside segmentation and
    other processes), while these few small matrix products take a fraction of a millisecond.
    """

    def __init__(self, net: LutNet):
        convs = [m for m in net.trunk if isinstance(m, torch.nn.Conv2d)]
        self.convs = [(c.weight.detach().numpy().reshape(c.out_channels, -1).astype(np.float32),
                       c.bias.detach().numpy().astype(np.float32)) for c in convs]
        self.head_w = net.head_w.detach().numpy()  # [S, K, F]
        self.head_b = net.head_b.detach().numpy()  # [S, K]
        self.basis = net.basis.detach().numpy().reshape(net.num_styles, net.bases, -1)  # [S, K, 3·D³]
        self.ident = net.ident.numpy().reshape(-1)
        self.dim = net.dim
        self.convex = net.mix == "convex"

    def weights(self, thumb: np.ndarray) -> np.ndarray:
        """``thumb``: float32 RGB ``[3, 32, 32]`` in [0, 1] → weights ``[S, K]``."""
        mean = thumb.mean((1, 2))
        spread = np.sqrt(np.maximum((thumb * thumb).mean((1, 2)) - mean * mean, 1e-8))
        f = thumb * 2 - 1
        for w, b in self.convs:  # 3×3, stride 2, padding 1, as im2col + one product
            c, h, wd = f.shape
            p = np.pad(f, ((0, 0), (1, 1), (1, 1)))
            cols = np.stack([p[:, ky:ky + h:2, kx:kx + wd:2] for ky in range(3) for kx in range(3)], 1)
            f = (w @ cols.reshape(c * 9, -1) + b[:, None]).reshape(-1, (h + 1) // 2, (wd + 1) // 2)
            f = np.where(f > 0, f, 0.2 * f)
        feat = np.concatenate([f.mean((1, 2)), mean, spread]).astype(np.float32)
        w = np.einsum("skf,f->sk", self.head_w, feat) + self.head_b
        if self.convex:  # softmax over the basis LUTs
            w = np.exp(w - w.max(-1, keepdims=True))
            w /= w.sum(-1, keepdims=True)
        return w

    def lut(self, wk: np.ndarray, row_weights: np.ndarray) -> np.ndarray:
        """``identity + Σ_s row_weight_s Σ_k wk_sk · basis_sk`` as ``[3, D, D, D]``."""
        sk = (wk * row_weights[:, None]).reshape(-1)
        res = sk @ self.basis.reshape(len(sk), -1)
        d = self.dim
        return (self.ident + res).reshape(3, d, d, d).astype(np.float32)


class LutRunner:
    """One LUT pack's network with its temporal state (weights averaged over refreshes).

    Args:
        pack: a pack whose ``kind`` is ``"lut"``.
        refresh: predict the weights every ``refresh`` frames (the thumbnail CNN costs ~0.2 ms).
        blend: how much of a new prediction enters the running average (1 = no smoothing).
    """

    def __init__(self, pack: "StylePack", refresh: int = REFRESH_EVERY, blend: float = BLEND):
        self.pack = pack
        self.net: LutNet = pack.build()
        self.refresh, self.blend = max(1, refresh), blend
        self._wk: torch.Tensor | None = None  # [1, S, K] running average
        self._thumb: torch.Tensor | None = None
        self._frame = 0
        self.np_net = NumpyWeights(self.net)
        self._wk_np: np.ndarray | None = None
        self._thumb_np: np.ndarray | None = None

    def weights(self, frame: np.ndarray | torch.Tensor) -> torch.Tensor:
        """The averaged mixing weights ``[1, S, K]`` for this frame: uint8 BGR ``(H, W, 3)`` (host), or
        float RGB ``[1, 3, H, W]`` in [0, 1] on the network's device (None will do when :attr:`due` is False)."""
        due = self.due
        self._frame += 1
        if not due:
            return self._wk
        if isinstance(frame, np.ndarray):
            small = cv2.resize(frame, THUMB, interpolation=cv2.INTER_AREA)
            thumb = torch.from_numpy(cv2.cvtColor(small, cv2.COLOR_BGR2RGB).transpose(2, 0, 1)[None].copy())
            thumb = thumb.float().mul_(1 / 255)
        else:
            thumb = self.net.thumbnail(frame.float())
        cut = self._thumb is None or float((thumb - self._thumb).abs().mean()) > SCENE_CUT
        self._thumb = thumb
        s = self.net.num_styles
        with torch.inference_mode():
            wk = self.net.weights(thumb, torch.ones(1, s, device=thumb.device) / s)
        self._wk = wk if cut else self._wk + self.blend * (wk - self._wk)
        return self._wk

    @property
    def due(self) -> bool:
        """Whether the next :meth:`weights` call predicts (and so needs the frame) rather than reusing."""
        return self._wk is None or self._frame % self.refresh == 0

    def host_weights(self, frame: np.ndarray) -> np.ndarray:
        """Like :meth:`weights` for a uint8 BGR frame on the host, in numpy: ``[S, K]``."""
        due = self._wk_np is None or self._frame % self.refresh == 0
        self._frame += 1
        if not due:
            return self._wk_np
        small = cv2.resize(frame, THUMB, interpolation=cv2.INTER_AREA)
        thumb = cv2.cvtColor(small, cv2.COLOR_BGR2RGB).transpose(2, 0, 1).astype(np.float32) * np.float32(1 / 255)
        cut = self._thumb_np is None or float(np.abs(thumb - self._thumb_np).mean()) > SCENE_CUT
        self._thumb_np = thumb
        wk = self.np_net.weights(thumb)
        self._wk_np = wk if cut else self._wk_np + self.blend * (wk - self._wk_np)
        return self._wk_np

    def lut(self, frame: np.ndarray, row_weights: np.ndarray) -> np.ndarray:
        """``[3, D, D, D]`` float32 for a weighted sum of this pack's styles (weights need not sum to 1:
        the result is ``identity + Σ row_weight · residual``)."""
        return self.np_net.lut(self.host_weights(frame), np.asarray(row_weights, np.float32))


class LutState:
    """The stylizer's LUT runners by pack name and the table last built (rebuilt when the LUT changes)."""

    def __init__(self):
        self.runners: dict[str, LutRunner] = {}
        self._lock = threading.Lock()
        self._key: np.ndarray | None = None  # the LUT the table was built from
        self._table: LutTable | None = None
        self.table_ms = 0.0

    def runner(self, pack: "StylePack") -> LutRunner:
        with self._lock:
            r = self.runners.get(pack.name)
            if r is None:
                r = self.runners[pack.name] = LutRunner(pack)
            return r

    def table(self, luts: list[tuple[np.ndarray, float]]) -> LutTable:
        """One table for ``identity + Σ weight · (lut − identity)``; reused while the inputs are unchanged."""
        dims = {lut.shape[-1] for lut, _ in luts}
        if len(dims) > 1:  # packs on different lattices: resample to the finest
            d = max(dims)
            luts = [(lut if lut.shape[-1] == d else _resample(lut, d), w) for lut, w in luts]
        d = luts[0][0].shape[-1]
        ident = _identity_np(d)
        total = ident + sum(w * (lut - ident) for lut, w in luts)
        # Rebuild only when some entry moved by a quarter of an 8-bit level: a settled average costs nothing.
        if self._key is None or self._key.shape != total.shape or float(np.abs(total - self._key).max()) > 0.25 / 255:
            t0 = time.perf_counter()
            self._table = LutTable(total.astype(np.float32))
            self._key = total
            self.table_ms = (time.perf_counter() - t0) * 1000
        return self._table


_IDENT: dict[int, np.ndarray] = {}


def _identity_np(d: int) -> np.ndarray:
    if d not in _IDENT:
        from .lut import identity_lut

        _IDENT[d] = identity_lut(d).numpy()
    return _IDENT[d]


def _resample(lut: np.ndarray, d: int) -> np.ndarray:
    g = torch.linspace(0, 1, d)
    r, gg, b = torch.meshgrid(g, g, g, indexing="ij")
    pts = torch.stack([r, gg, b]).reshape(1, 3, d, d * d)
    return apply_lut(torch.from_numpy(lut), pts)[0].reshape(3, d, d, d).numpy()


def state_of(stylizer: "Stylizer") -> LutState:
    """The LUT state a stylizer carries (made on first use)."""
    state = getattr(stylizer, "_lut_state", None)
    if state is None:
        state = stylizer._lut_state = LutState()
    return state


def stylize(stylizer: "Stylizer", frame: np.ndarray, mix: "Mix") -> np.ndarray:
    """uint8 BGR ``frame`` with ``mix`` applied, for a mix holding at least one LUT-pack style."""
    state = state_of(stylizer)
    rows: dict[str, np.ndarray] = {}
    rest: Mix = {}
    for key, wt in mix.items():
        s = stylizer._style(key)
        pack = stylizer.registry.packs[s.pack]
        if pack.kind != "lut":
            rest[key] = wt
            continue
        rw = rows.setdefault(s.pack, np.zeros(int(pack.architecture["num_styles"]), np.float32))
        rw[s.index] += wt
    # one weight prediction per pack and frame; each LUT is identity + Σ (mix weight · residual)
    luts = [(state.runner(stylizer.registry.packs[p]).lut(frame, rw), 1.0) for p, rw in rows.items()]
    change = state.table(luts).change(frame)  # (H, W, 4) int16, BGR_
    if rest:
        cin = sum(rest.values())
        d = stylizer.delta(frame, {k: v / cin for k, v in rest.items()})  # (h, w, 3) float BGR, 0..1 units
        d16 = np.rint(d * (255.0 * cin)).astype(np.int16)
        if d16.shape[:2] != frame.shape[:2]:
            d16 = cv2.resize(d16, (frame.shape[1], frame.shape[0]), interpolation=cv2.INTER_LINEAR)
        change = change.copy()
        change[..., :3] += d16
    bgra = cv2.cvtColor(frame, cv2.COLOR_BGR2BGRA)
    return cv2.cvtColor(cv2.add(bgra, change, dtype=cv2.CV_8U), cv2.COLOR_BGRA2BGR)


def delta_on_device(stylizer: "Stylizer", pack: "StylePack", rows: list[tuple[int, float]],
                    frame_t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The device path's change for a LUT pack's rows, at the frame's full resolution.

    Args:
        frame_t: uint8 BGR ``[H, W, 3]`` on the backend's device.
        rows: ``(style index, weight)`` pairs of this pack in the mix.

    Returns:
        ``[1, 3, H, W]`` RGB change ``(apply(LUT, x) − x) · Σ weights`` in ``dtype``.

    Where the CuPy kernels serve the frame, the change is one pass over the uint8 frame
    (``kernels.dispatch.lut_delta``) and the full-resolution float input is made only on the frames
    that predict new weights; elsewhere it is torch's ``grid_sample`` (:func:`apply_lut`).
    """
    from kernels import dispatch

    runner = state_of(stylizer).runner(pack)
    runner.net.to(frame_t.device)  # float32 even on CUDA: the table is tiny and the apply is gathers
    H, W = frame_t.shape[:2]
    total = sum(wt for _, wt in rows)
    rw = torch.zeros(1, runner.net.num_styles, device=frame_t.device)
    for i, wt in rows:
        rw[0, i] += wt / total
    fused = dispatch.uses_cupy(frame_t)
    with torch.inference_mode():
        x = dispatch.prepare(frame_t, H, W, torch.float32) if runner.due or not fused else None
        lut = runner.net.lut_from_weights(runner.weights(x), rw)  # [1, 3, D, D, D]
        if fused:
            return dispatch.lut_delta(frame_t, lut[0], total, dtype)
        d = (apply_lut(lut, x) - x) * total
    return d.to(dtype)
