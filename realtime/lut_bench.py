"""Benchmark of the per-pixel LUT apply on 640×480 uint8 frames; prints one JSON object.

    python -m realtime.lut_bench [--runs 31] [--threads 2]

Providers: ``table`` (the live path: a 64³ table of the LUT's change, one gather and a saturating add),
``table_build`` (making that table from a 17³/33³ LUT, done when the LUT changes), ``torch_grid_sample``
(exact trilinear in torch, the device path's op on the CPU) and, as the in-process baseline, ``cin_apply_delta``
(what a CIN student's frame costs after the network: upsampling a 320×240 change and adding it).
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from .lut import LutTable, apply_lut, apply_lut_reference, identity_lut
from .stylizer import apply_delta


def _median_ms(fn, runs: int, warmup: int = 3) -> tuple[float, float]:
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        ts.append((time.perf_counter() - t0) * 1000)
    return round(float(np.median(ts)), 3), round(float(np.percentile(ts, 95)), 3)


def _look(d: int) -> np.ndarray:
    ident = identity_lut(d).numpy()
    m = np.array([[0.9, 0.15, -0.05], [0.05, 0.85, 0.1], [0.0, 0.2, 0.7]], np.float32)
    return np.clip(np.einsum("ij,jxyz->ixyz", m, ident), 0, 1) ** 1.1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m realtime.lut_bench")
    ap.add_argument("--runs", type=int, default=31)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    rng = np.random.default_rng(0)
    frame = cv2.resize((rng.random((60, 80, 3)) * 255).astype(np.uint8), (640, 480), interpolation=cv2.INTER_CUBIC)
    frame = np.clip(frame.astype(int) + rng.integers(-6, 7, frame.shape), 0, 255).astype(np.uint8)
    res: dict = {"benchmark": "LUT apply, 640x480 uint8 BGR", "runs": args.runs, "threads": args.threads,
                 "machine": platform.machine(), "python": platform.python_version(), "torch": torch.__version__,
                 "opencv": cv2.__version__, "numpy": np.__version__}
    try:
        res["commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                       cwd=Path(__file__).parent).stdout.strip()
    except OSError:
        pass
    delta = (rng.random((240, 320, 3), dtype=np.float32) - 0.5) * 0.1
    res["cin_apply_delta_ms"], res["cin_apply_delta_p95_ms"] = _median_ms(lambda: apply_delta(frame, delta), args.runs)
    x = torch.from_numpy(frame[..., ::-1].copy()).permute(2, 0, 1)[None].float() / 255
    ref = None
    for d in (17, 33):
        lut = _look(d).astype(np.float32)
        table = LutTable(lut)
        res[f"table_{d}_ms"], res[f"table_{d}_p95_ms"] = _median_ms(lambda: table.apply(frame), args.runs)
        res[f"table_build_{d}_ms"], _ = _median_ms(lambda: LutTable(lut), max(5, args.runs // 3))
        lt = torch.from_numpy(lut)
        res[f"torch_grid_sample_{d}_ms"], _ = _median_ms(lambda: apply_lut(lt, x), max(5, args.runs // 3))
        if ref is None:
            ref = apply_lut_reference(lut, frame[..., ::-1] / 255.0)[..., ::-1] * 255
            err = np.abs(table.apply(frame).astype(np.float64) - np.clip(ref, 0, 255))
            res["table_17_error_levels"] = {"mean": round(float(err.mean()), 3), "max": round(float(err.max()), 3)}
    res["ratio_table_17_vs_cin_apply_delta"] = round(res["table_17_ms"] / res["cin_apply_delta_ms"], 2)
    print(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
