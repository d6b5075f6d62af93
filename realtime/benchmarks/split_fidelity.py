"""How close a split's cheaper background pass stays to the same style run in full; prints JSON.

``python -m realtime.benchmarks.split_fidelity --json OUT``: for every installed style, the student in bfloat16
(the background pass of ``--split-precision bf16``) against the same student in fp32, on held-out
pictures the shipped packs never trained on (the cameraman, Grace Hopper, a motorcycle, the Hubble
deep field) and on frames of the demo clip, as whole 640×480 frames at the pack's internal size:

    fidelity = 1 − ‖cheap − full‖ / ‖x − full‖

(the ``fidelity_gain`` of ``stylecam evaluate`` with the fp32 student as the target; 1 = identical).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import cv2
import numpy as np
import torch

from kernels.provenance import provenance
from realtime.benchmarks.common import emit_json
from realtime.composite import cover_resize
from realtime.stylizer import apply_delta, prepare

SIZE = (640, 480)


def fidelity(cheap: np.ndarray, full: np.ndarray, x: np.ndarray) -> float:
    """``1 − ‖cheap − full‖ / ‖x − full‖`` over whole frames (1 when ``cheap`` equals ``full``)."""
    c, f, xx = (np.asarray(a, np.float64) for a in (cheap, full, x))
    return float(1.0 - np.linalg.norm(c - f) / max(np.linalg.norm(xx - f), 1e-9))


def held_out_pictures() -> dict[str, np.ndarray]:
    """uint8 BGR 640×480 pictures bundled with scikit-image and matplotlib that no shipped pack trained on."""
    import matplotlib.cbook
    import skimage

    data = Path(skimage.__file__).parent / "data"
    paths = {"camera": data / "camera.png", "motorcycle_left": data / "motorcycle_left.png",
             "hubble_deep_field": data / "hubble_deep_field.jpg",
             "grace_hopper": Path(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))}
    return {k: cover_resize(cv2.imread(str(p), cv2.IMREAD_COLOR), SIZE) for k, p in paths.items()}


def demo_frames(n: int = 5) -> dict[str, np.ndarray]:
    from realtime.demo import DEMO_CLIP
    from realtime.sources import open_source

    with open_source(str(DEMO_CLIP), size=SIZE, mode="all", paced=False, max_frames=200) as src:
        frames = [f.image for f in src.frames()]
    idx = np.linspace(0, len(frames) - 1, n).round().astype(int)
    return {f"demo{i}": frames[i] for i in idx}


def style_fidelity(pack, index: int, pictures: dict[str, np.ndarray], size: tuple[int, int]) -> dict[str, float]:
    """Fidelity of the bfloat16 student to the fp32 one for style row ``index`` on each picture."""
    full_net = pack.build().eval()
    cheap_net = pack.build().eval().to(torch.bfloat16)
    w = torch.zeros(1, full_net.num_styles)
    w[0, index] = 1.0
    out = {}
    for name, x in pictures.items():
        xin = prepare(x, size)  # [1, 3, h, w] RGB
        xt = torch.from_numpy(xin)
        with torch.inference_mode():
            d_full = full_net(xt, w).numpy()[0] - xin[0]
            d_cheap = cheap_net(xt.bfloat16(), w.bfloat16()).float().numpy()[0] - xin[0]

        def frame(d):  # the change upsampled onto the full frame, as the pipeline shows it
            return apply_delta(x, np.ascontiguousarray(d[::-1].transpose(1, 2, 0)))

        out[name] = round(fidelity(frame(d_cheap), frame(d_full), x), 4)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m realtime.benchmarks.split_fidelity", description=__doc__.split("\n\n")[0])
    parser.add_argument("--styles", action="append", default=[], metavar="DIR", help="extra style packs")
    parser.add_argument("--only", action="append", default=[], metavar="STYLE", help="just these styles")
    parser.add_argument("--json", metavar="OUT", type=Path, help="also write the JSON here")
    args = parser.parse_args(argv)
    from realtime.styles import StyleRegistry

    torch.set_num_threads(min(2, os.cpu_count() or 1))
    reg = StyleRegistry(args.styles)
    styles = [reg.find(s) for s in args.only] if args.only else reg.styles
    groups = {"held_out": held_out_pictures(), "demo": demo_frames()}
    per_style = {}
    for s in styles:
        pack = reg.packs[s.pack]
        res = pack.resolution or (320, 240)
        size = (res[0], round(SIZE[1] * res[0] / SIZE[0]) // 4 * 4)
        per_style[s.key] = {g: style_fidelity(pack, s.index, pics, size) for g, pics in groups.items()}
    summary = {g: {"min": min(v for r in per_style.values() for v in r[g].values()),
                   "mean": round(float(np.mean([v for r in per_style.values() for v in r[g].values()])), 4)}
               for g in groups} if per_style else {}
    result = {"benchmark": "split background fidelity (bfloat16 vs fp32 student)", "summary": summary,
              "target": 0.97, "per_style": per_style, **provenance()}
    emit_json(result, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
