"""Known-answer benchmark of ``stylecam learn``: a look with a ground truth, learned without pairs.

Style photos are made by applying a known look to one set of pictures; the look is learned against a
*disjoint* set of content pictures; the score is ``fidelity_gain`` to the known look on held-out
pictures that neither side trained on. Beside it: paired fits (the LUT model fitted to the content
pictures' pairs, the same model fitted on the held-out pairs themselves — the model class's ceiling —
and a global quadratic colour map fitted on each held-out picture) and trivial unpaired baselines (per-channel histogram matching to the
pooled style photos, per-channel mean/std transfer). Prints one JSON object::

    python -m training.learn_bench --look vintage --minutes 20 --out runs/bench-vintage

Looks: ``vintage`` (the vintage-film CycleGAN of the ``film`` recipe, fetched from its package) and
``grade`` (a fixed warm, faded colour grade: a colour matrix, lifted blacks and a gamma).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import torch

from realtime.lut import LutNet
from kernels.provenance import provenance
from training.evaluate import fidelity_gain
from training.learn import LearnConfig, PhotoSet, bundled_portraits, learn, load_photos

FRAME_W = 320  # pictures are scored at 320×240-ish, the live internal scale

# The portraits split three ways: style side, content side, held out (the recipes' own held-out pair).
STYLE_SIDE = ("astronaut", "coffee", "rocket", "obama.", "biden", "china")
GRADE_M = torch.tensor([[0.95, 0.12, -0.02], [0.04, 0.88, 0.05], [-0.04, 0.10, 0.74]])


def grade(x: torch.Tensor) -> torch.Tensor:
    """A warm, faded grade: a colour matrix, lifted blacks, a soft gamma."""
    y = torch.einsum("ij,njhw->nihw", GRADE_M, x).clamp(0, 1)
    return (0.06 + 0.9 * y ** 0.9).clamp(0, 1)


def vintage() -> Callable[[torch.Tensor], torch.Tensor]:
    from training.recipes.fetch import fetch_teacher
    from training.recipes.recipe import load_recipe
    from training.teachers import load_teacher

    recipe = load_recipe(Path(__file__).parent / "recipes" / "film.json")
    t = recipe.teachers["vintagify"]
    path = fetch_teacher(t)
    teacher = load_teacher(path, range="-1,1")

    def run(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return torch.cat([teacher(x[i:i + 1]) for i in range(x.shape[0])])

    return run


def to_frame(img: np.ndarray) -> torch.Tensor:
    """RGB uint8 → ``[1, 3, h, 320]`` in [0, 1]."""
    h = round(img.shape[0] * FRAME_W / img.shape[1])
    small = cv2.resize(img, (FRAME_W, h), interpolation=cv2.INTER_AREA)
    return torch.from_numpy(small).permute(2, 0, 1)[None].float() / 255


def to_u8(x: torch.Tensor) -> np.ndarray:
    return (x[0].clamp(0, 1).permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)


def score(frames: list[torch.Tensor], targets: list[torch.Tensor], outs: list[torch.Tensor]) -> float:
    """``fidelity_gain`` over all held-out pictures together."""
    flat = lambda ts: torch.cat([t.flatten() for t in ts])  # noqa: E731
    return round(fidelity_gain(flat(frames), flat(targets), flat(outs)), 4)


def hist_match(x: torch.Tensor, pooled: np.ndarray) -> torch.Tensor:
    """Per-channel histogram matching of ``x`` to the pooled style pixels ``[n, 3]``."""
    img = x[0].permute(1, 2, 0).numpy().reshape(-1, 3)
    out = np.empty_like(img)
    q = np.linspace(0, 1, 257)
    for c in range(3):
        ref = np.quantile(pooled[:, c], q)
        src = np.quantile(img[:, c], q)
        out[:, c] = np.interp(img[:, c], src, ref)
    return torch.from_numpy(out.reshape(x.shape[2], x.shape[3], 3)).permute(2, 0, 1)[None]


def mean_std(x: torch.Tensor, pooled: np.ndarray) -> torch.Tensor:
    m, s = x.mean((0, 2, 3), keepdim=True), x.std((0, 2, 3), keepdim=True)
    pm = torch.from_numpy(pooled.mean(0)).view(1, 3, 1, 1).float()
    ps = torch.from_numpy(pooled.std(0)).view(1, 3, 1, 1).float()
    return ((x - m) / s.clamp_min(1e-4) * ps + pm).clamp(0, 1)


def fit_pairs(xs: list[torch.Tensor], ys: list[torch.Tensor], steps: int, seed: int = 0) -> LutNet:
    """The ceiling: the LUT model fitted directly to (picture, look) pairs with an L2 loss."""
    torch.manual_seed(seed)
    net = LutNet("lut3d-17", 16, 1)
    opt = torch.optim.Adam([{"params": [p for n, p in net.named_parameters() if n != "basis"], "lr": 2e-3},
                            {"params": [net.basis], "lr": 1e-2}])
    one = torch.ones(1, 1)
    for i in range(steps):
        k = i % len(xs)
        loss = (net(xs[k], one) - ys[k]).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net.eval()


def _ceilings(bx: list[torch.Tensor], by: list[torch.Tensor], hx: list[torch.Tensor], hy: list[torch.Tensor],
              steps: int, seed: int) -> dict[str, float]:
    """What paired fits reach, beside the unpaired result (all scored on the held-out pictures):

    - ``lut_fitted_to_content_pairs``: the LUT model fitted to (content picture, look) pairs, then run
      on the held-out pictures — what pairs of *other* pictures teach;
    - ``lut_fitted_on_held_out``: the LUT model fitted to the held-out pairs themselves — the model
      class's ceiling;
    - ``quadratic_map_per_picture``: a global 10-term quadratic colour map fitted on each held-out
      picture itself (``realtime.colormap``) — the reference the guided styles use.
    """
    from realtime.colormap import apply_map_rgb, fit_map

    one = torch.ones(1, 1)
    out: dict[str, float] = {}
    if steps:
        for name, (xs, ys) in (("lut_fitted_to_content_pairs", (bx, by)), ("lut_fitted_on_held_out", (hx, hy))):
            net = fit_pairs(xs, ys, steps, seed)
            with torch.no_grad():
                out[name] = score(hx, hy, [net(x, one) for x in hx])

    def hwc(t: torch.Tensor) -> np.ndarray:
        return t[0].permute(1, 2, 0).numpy().astype(np.float64)

    maps = [apply_map_rgb(fit_map(hwc(x), hwc(y)), hwc(x)) for x, y in zip(hx, hy)]
    out["quadratic_map_per_picture"] = score(hx, hy, [torch.from_numpy(m).permute(2, 0, 1)[None].float()
                                                      for m in maps])
    return out


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m training.learn_bench")
    ap.add_argument("--look", choices=("vintage", "grade"), default="vintage")
    ap.add_argument("--minutes", type=float, default=20.0)
    ap.add_argument("--out", required=True, help="folder for the style photos, the learned pack and its run")
    ap.add_argument("--ceiling-steps", type=int, default=600)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="a LearnConfig field for the unpaired run, e.g. w_smooth=100 (repeatable)")
    return ap


@dataclass
class _Sides:
    """The bundled portraits split three ways, as RGB uint8 photos and file names."""

    style: list[np.ndarray]  # get the known look, then serve as style photos
    style_names: list[str]
    content: list[np.ndarray]
    content_names: list[str]
    held_out: PhotoSet  # scored only


def _split_portraits() -> _Sides:
    train = load_photos(bundled_portraits(), "portraits", 2)
    held = load_photos(bundled_portraits(held_out=True), "portraits", 2)
    is_style = [any(k in Path(n).name for k in STYLE_SIDE) for n in train.names]
    return _Sides([im for im, s in zip(train.images, is_style) if s],
                  [Path(n).name for n, s in zip(train.names, is_style) if s],
                  [im for im, s in zip(train.images, is_style) if not s],
                  [Path(n).name for n, s in zip(train.names, is_style) if not s],
                  held)


def _write_style_photos(look: Callable[[torch.Tensor], torch.Tensor], sides: _Sides,
                        style_dir: Path) -> list[np.ndarray]:
    """The known look on the style side, at the live scale, written to ``style_dir`` as PNGs."""
    style_dir.mkdir(exist_ok=True)
    style_imgs = []
    for im, n in zip(sides.style, sides.style_names):
        y = to_u8(look(to_frame(im)))
        cv2.imwrite(str(style_dir / (Path(n).stem + ".png")), cv2.cvtColor(y, cv2.COLOR_RGB2BGR))
        style_imgs.append(y)
    return style_imgs


def _learn_config(ap: argparse.ArgumentParser, args: argparse.Namespace, style_dir: Path, out: Path) -> LearnConfig:
    """The unpaired run's configuration, with ``--set KEY=VALUE`` applied (a bad key is a usage error)."""
    cfg = LearnConfig(style_photos=[str(style_dir)], out=str(out / "pack"), style_name=f"Learned {args.look}",
                      minutes=args.minutes, seed=args.seed, progress=False)
    for item in args.set:
        key, _, value = item.partition("=")
        if not hasattr(cfg, key):
            ap.error(f"--set {item}: no such setting")
        old = getattr(cfg, key)
        setattr(cfg, key, value.lower() in ("1", "true", "yes") if isinstance(old, bool) else type(old)(value))
    return cfg


def _record(pack_dir: Path, res: dict, out: Path, hx: list[torch.Tensor], hy: list[torch.Tensor],
            outs: list[torch.Tensor]) -> None:
    """The known-answer result into the pack's metrics, and a held-out grid (picture | look | learned)."""
    meta = json.loads((pack_dir / "pack.json").read_text())
    meta["styles"][0]["metrics"]["known_answer"] = {k: res[k] for k in ("look", "baselines", "ceilings",
                                                                        "learned_unpaired", "held_out") if k in res}
    (pack_dir / "pack.json").write_text(json.dumps(meta, indent=2) + "\n")
    grid = [np.concatenate([to_u8(x), to_u8(y), to_u8(o)], 1) for x, y, o in zip(hx, hy, outs)]
    cv2.imwrite(str(out / "held_out.jpg"), cv2.cvtColor(np.concatenate([cv2.resize(g, (3 * FRAME_W, 240))
                                                                      for g in grid], 0), cv2.COLOR_RGB2BGR))


def main(argv: list[str] | None = None) -> int:
    from realtime.styles import load_pack

    ap = _parser()
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    look = vintage() if args.look == "vintage" else grade
    sides = _split_portraits()
    t0 = time.perf_counter()
    style_dir = out / "style-photos"
    style_imgs = _write_style_photos(look, sides, style_dir)
    hx = [to_frame(im) for im in sides.held_out.images]
    hy = [look(x) for x in hx]
    bx = [to_frame(im) for im in sides.content]
    by = [look(x) for x in bx]
    look_s = time.perf_counter() - t0
    pooled = np.concatenate([s.reshape(-1, 3) for s in style_imgs]).astype(np.float32) / 255

    res: dict = {"benchmark": "stylecam learn known-answer", "look": args.look, "style_side": sides.style_names,
                 "content_side": sides.content_names, "held_out": [Path(n).name for n in sides.held_out.names],
                 "frame_width": FRAME_W, "look_seconds": round(look_s, 1)}
    res["baselines"] = {
        "identity": score(hx, hy, hx),
        "histogram_matching": score(hx, hy, [hist_match(x, pooled) for x in hx]),
        "mean_std_transfer": score(hx, hy, [mean_std(x, pooled) for x in hx]),
    }
    t1 = time.perf_counter()
    res["ceilings"] = _ceilings(bx, by, hx, hy, args.ceiling_steps, args.seed)
    res["ceiling_seconds"] = round(time.perf_counter() - t1, 1)

    style = PhotoSet(style_imgs, sides.style_names, [str(style_dir)])
    content = PhotoSet(sides.content, sides.content_names, ["bundled portraits (content side)"])
    cfg = _learn_config(ap, args, style_dir, out)
    res["learn_config"] = {k: getattr(cfg, k) for k in ("w_adv", "w_sw", "w_struct", "w_ident", "w_smooth",
                                                       "w_mono", "lr", "gan", "r1", "batch")}
    run = learn(cfg, style, content)
    net = load_pack(run.out).build()
    with torch.no_grad():
        outs = [net(x, torch.ones(1, 1)) for x in hx]
    res["learned_unpaired"] = score(hx, hy, outs)
    res["learn_steps"], res["learn_minutes"] = run.steps, round(run.seconds / 60, 2)
    res.update(provenance({"threads": torch.get_num_threads()}))
    _record(run.out, res, out, hx, hy, outs)
    print(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
