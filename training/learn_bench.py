"""Known-answer benchmark of ``stylecam learn``: a look with a ground truth, learned without pairs.

Style photos are made by applying a known look to six bundled portraits; the look is learned against
six *other* portraits (the content side); the score is ``fidelity_gain`` to the known look on the
held-out sets of :mod:`training.heldout` (portraits, frames of a real CC0 video and webcam-like soft,
noisy copies, never trained on; 320×240): pooled over a set, with its worst picture. Settings are chosen
on the ``selection`` set; the ``reporting`` set is what gets quoted. Beside it:

* unpaired baselines from the same photos: per-channel histogram matching and mean/std transfer to the
  pooled style photos, and one global quadratic colour map fitted by sliced-Wasserstein matching of
  pixel and 3×3-patch distributions (:func:`fit_sw_quadratic`);
* paired fits (``ceilings``): the LUT model fitted to the content pictures' pairs (what pairs of *other*
  pictures teach), the same model fitted on each held-out set's own pairs (the model class's ceiling),
  and a global quadratic colour map fitted on each held-out picture;
* ``--style-side content``, a control: the look on the content pictures themselves, still unpaired, so
  the gap to the benchmark is what the difference between the two sides' pictures costs.

Prints one JSON object::

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
import torch.nn.functional as F

from realtime.colormap import apply_map_torch
from realtime.lut import LutNet
from kernels.provenance import provenance
from training.learn import LearnConfig, PhotoSet, bundled_portraits, learn, load_photos

FRAME_W = 320  # pictures are scored at 320×240, the live internal scale
#: the unpaired run's settings recorded beside its result.
LEARN_KEYS = ("mix", "basis", "sw_set", "w_adv", "w_sw", "w_struct", "w_ident", "w_smooth", "w_mono", "lr", "gan", "r1",
              "batch")

# The recipes' training portraits split two ways: the style side and the content side.
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


@dataclass
class Held:
    """One held-out set at the benchmark's scale: names, pictures and the known look on them."""

    names: list[str]
    xs: list[torch.Tensor]  # [1, 3, 240, 320] in [0, 1]
    ys: list[torch.Tensor]  # the known look


def held_out(look: Callable[[torch.Tensor], torch.Tensor]) -> dict[str, Held]:
    """The selection and reporting sets of :mod:`training.heldout` (portraits, a real CC0 video's frames and
    webcam-like copies; never trained on), at 320×240 with the known look applied."""
    from training import heldout

    out = {}
    for which in ("selection", "reporting"):
        frames = heldout.load(which, size=(FRAME_W, FRAME_W * 3 // 4))
        xs = [torch.from_numpy(f).permute(2, 0, 1)[None].float() / 255 for _, f in frames]
        out[which] = Held([n for n, _ in frames], xs, [look(x) for x in xs])
    return out


def _hwc(t: torch.Tensor) -> np.ndarray:
    """``[1, 3, H, W]`` → ``(H, W, 3)`` float64."""
    return t[0].permute(1, 2, 0).double().numpy()


def score_held(h: Held, outs: list[torch.Tensor]) -> dict:
    """Pooled ``fidelity_gain`` over a held-out set, its worst picture and every picture's."""
    from training.heldout import score_arrays

    r = score_arrays(h.names, [_hwc(t) for t in h.xs], [_hwc(t) for t in h.ys], [_hwc(t) for t in outs])
    return {"fidelity_gain": r["fidelity_gain"], "worst": [r["fidelity_gain_min_picture"], r["fidelity_gain_min"]],
            "per_picture": r["per_picture"]}


def score_sets(sets: dict[str, Held], fn: Callable[[torch.Tensor], torch.Tensor]) -> dict:
    """``fn`` scored on every held-out set."""
    with torch.no_grad():
        return {which: score_held(h, [fn(x) for x in h.xs]) for which, h in sets.items()}


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


def fit_sw_quadratic(content: list[torch.Tensor], style: list[torch.Tensor], steps: int = 300,
                     seed: int = 0) -> torch.Tensor:
    """The unpaired quadratic baseline: one global quadratic colour map fitted by sliced-Wasserstein matching
    of the pixel and 3×3-patch distributions of the mapped content pictures to the style photos' (every
    picture of each side weighted alike, all of them at 80×60 in every step)."""
    from training.learn import patch_distance, photo_balanced

    gen = torch.Generator().manual_seed(seed)
    small = [F.interpolate(t, size=(60, 80), mode="area") for t in content]
    target = [F.interpolate(t, size=(60, 80), mode="area") for t in style]
    m = torch.zeros(10, 3)
    m[0, 0] = m[1, 1] = m[2, 2] = 1.0
    m.requires_grad_(True)
    opt = torch.optim.Adam([m], lr=1e-2)
    for i in range(steps):
        ys = [apply_map_torch(m, x) for x in small]
        loss = patch_distance(photo_balanced(ys, 8192, gen), photo_balanced(target, 8192, gen), gen)
        for group in opt.param_groups:
            group["lr"] = 1e-2 * (1 - i / steps)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return m.detach()


def _ceilings(bx: list[torch.Tensor], by: list[torch.Tensor], sets: dict[str, Held], steps: int,
              seed: int) -> dict[str, dict]:
    """What paired fits reach, beside the unpaired result (each scored on every held-out set):

    - ``lut_fitted_to_content_pairs``: the LUT model fitted to (content picture, look) pairs, then run
      on the held-out pictures — what pairs of *other* pictures teach;
    - ``lut_fitted_on_held_out``: the LUT model fitted to each held-out set's own pairs — the model
      class's ceiling;
    - ``quadratic_map_per_picture``: a global 10-term quadratic colour map fitted on each held-out
      picture itself (``realtime.colormap``) — the reference the guided styles use.
    """
    from realtime.colormap import apply_map_rgb, fit_map

    one = torch.ones(1, 1)
    out: dict[str, dict] = {}
    if steps:
        net = fit_pairs(bx, by, steps, seed)
        out["lut_fitted_to_content_pairs"] = score_sets(sets, lambda x: net(x, one))
        out["lut_fitted_on_held_out"] = {}
        for which, h in sets.items():
            own = fit_pairs(h.xs, h.ys, steps, seed)
            out["lut_fitted_on_held_out"].update(score_sets({which: h}, lambda x: own(x, one)))

    out["quadratic_map_per_picture"] = {
        which: score_held(h, [torch.from_numpy(apply_map_rgb(fit_map(_hwc(x), _hwc(y)), _hwc(x))).permute(2, 0, 1)[None]
                              for x, y in zip(h.xs, h.ys)])
        for which, h in sets.items()}
    return out


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m training.learn_bench")
    ap.add_argument("--look", choices=("vintage", "grade"), default="vintage")
    ap.add_argument("--minutes", type=float, default=20.0)
    ap.add_argument("--out", required=True, help="folder for the style photos, the learned pack and its run")
    ap.add_argument("--ceiling-steps", type=int, default=600)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--style-side", choices=("style", "content"), default="style",
                    help="which pictures carry the look: the six style-side portraits (the benchmark), or the "
                         "content pictures themselves (a control: unpaired still, but with no content gap)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="a LearnConfig field for the unpaired run, e.g. w_smooth=100 (repeatable)")
    return ap


@dataclass
class _Sides:
    """The bundled training portraits split two ways, as RGB uint8 photos and file names."""

    style: list[np.ndarray]  # get the known look, then serve as style photos
    style_names: list[str]
    content: list[np.ndarray]
    content_names: list[str]


def _split_portraits() -> _Sides:
    train = load_photos(bundled_portraits(), "portraits", 2)
    is_style = [any(k in Path(n).name for k in STYLE_SIDE) for n in train.names]
    return _Sides([im for im, s in zip(train.images, is_style) if s],
                  [Path(n).name for n, s in zip(train.names, is_style) if s],
                  [im for im, s in zip(train.images, is_style) if not s],
                  [Path(n).name for n, s in zip(train.names, is_style) if not s])


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


def _record(pack_dir: Path, res: dict, out: Path, h: Held, outs: list[torch.Tensor]) -> None:
    """The known-answer result into the pack's metrics, and a grid of the reporting set (picture | look | learned)."""
    meta = json.loads((pack_dir / "pack.json").read_text())
    rep = res["learned_unpaired"]["reporting"]
    meta["styles"][0]["metrics"]["known_answer"] = {  # the reporting set's pooled numbers; the JSON has the rest
        "look": res["look"], "style_side": res["style_side"], "held_out_set": "reporting",
        "learned_unpaired": rep["fidelity_gain"], "learned_worst": rep["worst"][1],
        "learned_worst_picture": rep["worst"][0],
        "baselines": {k: v["reporting"]["fidelity_gain"] for k, v in res["baselines"].items()},
        "ceilings": {k: v["reporting"]["fidelity_gain"] for k, v in res["ceilings"].items()}}
    (pack_dir / "pack.json").write_text(json.dumps(meta, indent=2) + "\n")
    grid = [np.concatenate([to_u8(x), to_u8(y), to_u8(o)], 1) for x, y, o in zip(h.xs, h.ys, outs)]
    cv2.imwrite(str(out / "held_out.jpg"), cv2.cvtColor(np.concatenate(grid, 0), cv2.COLOR_RGB2BGR))


def _baselines(sets: dict[str, Held], bx: list[torch.Tensor], style: list[torch.Tensor], seed: int) -> dict:
    """The unpaired baselines, each scored on every held-out set."""
    pooled = torch.cat([s[0].flatten(1).T for s in style]).numpy()
    m = fit_sw_quadratic(bx, style, seed=seed)
    return {"identity": score_sets(sets, lambda x: x),
            "histogram_matching": score_sets(sets, lambda x: hist_match(x, pooled)),
            "mean_std_transfer": score_sets(sets, lambda x: mean_std(x, pooled)),
            "sw_quadratic_map": score_sets(sets, lambda x: apply_map_torch(m, x))}


def main(argv: list[str] | None = None) -> int:
    from realtime.styles import load_pack

    ap = _parser()
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    look = vintage() if args.look == "vintage" else grade
    sides = _split_portraits()
    if args.style_side == "content":  # the control: the look on the content pictures themselves, unpaired
        sides.style, sides.style_names = sides.content, sides.content_names
    t0 = time.perf_counter()
    style_dir = out / "style-photos"
    style_imgs = _write_style_photos(look, sides, style_dir)
    sets = held_out(look)
    bx = [to_frame(im) for im in sides.content]
    by = [look(x) for x in bx]
    look_s = time.perf_counter() - t0

    res: dict = {"benchmark": "stylecam learn known-answer", "look": args.look, "style_side": args.style_side,
                 "style_photos": sides.style_names, "content_photos": sides.content_names,
                 "held_out": {w: h.names for w, h in sets.items()}, "frame": [FRAME_W, FRAME_W * 3 // 4],
                 "look_seconds": round(look_s, 1)}
    t1 = time.perf_counter()
    res["baselines"] = _baselines(sets, bx, [to_frame(im) for im in style_imgs], args.seed)
    res["ceilings"] = _ceilings(bx, by, sets, args.ceiling_steps, args.seed)
    res["reference_seconds"] = round(time.perf_counter() - t1, 1)

    style = PhotoSet(style_imgs, sides.style_names, [str(style_dir)])
    content = PhotoSet(sides.content, sides.content_names, ["bundled portraits (content side)"])
    cfg = _learn_config(ap, args, style_dir, out)
    res["learn_config"] = {k: getattr(cfg, k) for k in LEARN_KEYS}
    run = learn(cfg, style, content)
    net = load_pack(run.out).build()
    res["learned_unpaired"] = score_sets(sets, lambda x: net(x, torch.ones(1, 1)))
    res["learn_steps"], res["learn_minutes"] = run.steps, round(run.seconds / 60, 2)
    res.update(provenance({"threads": torch.get_num_threads()}))
    with torch.no_grad():
        _record(run.out, res, out, sets["reporting"], [net(x, torch.ones(1, 1)) for x in sets["reporting"].xs])
    print(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
