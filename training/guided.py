"""Guided styles offline: the default map fitted on the training photos, and evaluation as they run live.

*Guided-as-live* scoring (:func:`evaluate_guided`): every held-out picture becomes a clip with
motion (a 640×480 window panning and zooming slowly over the picture, with sensor-like noise, at 30
fps). The clip runs through the render path (``Pipeline``, ``--preset all --no-segmentation``, the
guide in keyframes mode at the style's cadence), except that each keyframe's map starts steering
only ``lag_s`` (0.5 s) after its keyframe, as a live guide delivers it late; so every scored frame is
steered by maps from keyframes at least 0.5 s older than itself. The last ``scored`` frames of each
clip are scored against the teacher run on those very frames at 640×480:

- ``fidelity_gain`` pooled over all pictures, ``fidelity_gain_min`` the worst picture's (its scored
  frames pooled) and ``fidelity_gain_min_picture`` its name, ``per_picture``;
- ``ewarp_student`` (the output's) and ``ewarp_teacher`` on the scored frames with the exact known
  motion, as :func:`training.evaluate.ewarp` defines it; ``ewarp_input`` for reference.

The held-out frames are the selection and reporting sets of :mod:`training.heldout`.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Callable, Sequence

import cv2
import numpy as np
import torch

from realtime.colormap import fit_map
from training import heldout

FRAME_SIZE = heldout.FRAME_SIZE
camera_frame = heldout.camera_frame


def held_out_frames(cache: Path | None = None, which: str = "reporting") -> list[tuple[str, np.ndarray]]:
    """``[(name, (480, 640, 3) uint8 RGB)]``: the held-out set ``which`` of :mod:`training.heldout`."""
    return heldout.load(which, cache)


def fit_default_map(teacher: Callable[[torch.Tensor], torch.Tensor], pictures: Sequence[np.ndarray],
                    keyframe: tuple[int, int]) -> np.ndarray:
    """One map for all ``pictures`` (uint8 RGB): each one a keyframe-sized camera frame, the teacher's
    answers pooled into one least-squares fit (towards the identity)."""
    src, dst = [], []
    for pic in pictures:
        k = camera_frame(pic, keyframe)
        x = torch.from_numpy(k).permute(2, 0, 1)[None].float() / 255.0
        y = teacher(x)
        src.append(x[0].reshape(3, -1).T.double().numpy())
        dst.append(y[0].reshape(3, -1).T.double().numpy())
    return fit_map(np.concatenate(src), np.concatenate(dst))


# --------------------------------------------------------------------------------------------
# clips with known motion
# --------------------------------------------------------------------------------------------

def motion_clip(frame: np.ndarray, n: int = 45, seed: int = 0, noise: float = 2.5
                ) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """A clip of ``n`` frames: a window panning and zooming slowly over ``frame`` (uint8 RGB), with noise.

    Returns:
        frames (uint8 RGB, the frame's size) and ``motions``: ``motions[t]`` is the 2×3 affine that
        takes a pixel of frame ``t + 1`` to where it was in frame ``t``.
    """
    rng = np.random.default_rng(seed)
    h, w = frame.shape[:2]
    big = cv2.resize(frame, (int(w * 1.25), int(h * 1.25)), interpolation=cv2.INTER_CUBIC)
    # window → big-picture coordinates: scale s, angle a, centre (cx, cy), drifting a little each frame
    s, a = 0.85, 0.0
    cx, cy = big.shape[1] / 2, big.shape[0] / 2
    vx, vy = rng.uniform(-1.5, 1.5, 2)
    vs, va = rng.uniform(-0.001, 0.001), rng.uniform(-0.0008, 0.0008)
    frames, mats = [], []
    for _ in range(n):
        c, si = np.cos(a) * s, np.sin(a) * s
        m = np.array([[c, -si, cx - c * w / 2 + si * h / 2], [si, c, cy - si * w / 2 - c * h / 2]])
        f = cv2.warpAffine(big, m, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                           borderMode=cv2.BORDER_REFLECT)
        f = np.clip(f + rng.normal(0, noise, f.shape), 0, 255).astype(np.uint8)
        frames.append(f)
        mats.append(np.vstack([m, [0, 0, 1]]))
        cx, cy, s, a = cx + vx, cy + vy, s * (1 + vs), a + va
    motions = [(np.linalg.inv(mats[t]) @ mats[t + 1])[:2] for t in range(n - 1)]
    return frames, motions


def ewarp_np(outputs: Sequence[np.ndarray], motions: Sequence[np.ndarray]) -> float:
    """Warping error with the exact motion: ``mean_t Σ M‖O_{t+1} − warp(O_t)‖² / Σ M`` (values in [0, 1]).

    Shape:
        outputs: ``T`` arrays ``(h, w, 3)`` (uint8 or float in [0, 1]); motions: ``T − 1`` 2×3 affines.
    """
    outs = [o.astype(np.float32) / 255.0 if o.dtype == np.uint8 else o.astype(np.float32) for o in outputs]
    h, w = outs[0].shape[:2]
    errs = []
    for t, m in enumerate(motions):
        flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
        prev = cv2.warpAffine(outs[t], m, (w, h), flags=flags, borderMode=cv2.BORDER_CONSTANT)
        valid = cv2.warpAffine(np.ones((h, w), np.float32), m, (w, h), flags=flags,
                               borderMode=cv2.BORDER_CONSTANT) > 0.999
        err = ((outs[t + 1] - prev) ** 2).sum(-1)
        errs.append(float(err[valid].sum() / max(1, valid.sum())))
    return float(np.mean(errs))


# --------------------------------------------------------------------------------------------
# scoring as live
# --------------------------------------------------------------------------------------------

def _teacher_on(teacher, frame: np.ndarray, cache: Path | None) -> np.ndarray:
    """The teacher on one uint8 RGB frame at its own size → float32 RGB (cached by teacher and frame)."""
    path = None
    if cache is not None and getattr(teacher, "sha256", ""):
        h = hashlib.sha256(f"{teacher.sha256}{sorted(teacher.options.items())}".encode() + frame.tobytes())
        path = Path(cache) / f"guided_teacher_{h.hexdigest()[:20]}.npy"
        if path.is_file():
            try:
                return np.load(path)
            except (OSError, ValueError):
                pass
    x = torch.from_numpy(np.ascontiguousarray(frame.transpose(2, 0, 1))).float().div(255.0)[None]
    with torch.inference_mode():
        y = teacher(x)[0].permute(1, 2, 0).float().numpy()
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp.npy")
        np.save(tmp, y)
        tmp.replace(path)
    return y


def _fg(x: np.ndarray, t: np.ndarray, r: np.ndarray) -> float:
    den = float(np.linalg.norm((x - t).ravel()))
    num = float(np.linalg.norm((r - t).ravel()))
    return 1.0 - num / den if den > 0 else (1.0 if num == 0 else 0.0)


def evaluate_guided(pack_dir: str | Path, style: str, teacher, frames: Sequence[tuple[str, np.ndarray]],
                    fps: float = 30.0, lag_s: float = 0.5, clip_len: int = 45, scored: int = 3,
                    cache: Path | None = None, progress: Callable[[str], None] = lambda m: None,
                    teacher_cache: Path | None = None) -> dict:
    """Score a guided style as it runs live (see the module docstring).

    Args:
        pack_dir, style: the pack and the style's id.
        teacher: the full-resolution teacher (float RGB NCHW in [0, 1] → same), e.g. ``load_teacher``'s.
        frames: ``[(name, (h, w, 3) uint8 RGB)]`` held-out frames.
        cache: a folder for the teacher's outputs.
        teacher_cache: the cache root a pinned teacher is fetched into (default ``~/.cache/stylecam``).
    """
    from realtime.composite import Treatment
    from realtime.pipeline import Pipeline, PipelineConfig

    lag = int(round(lag_s * fps))
    xs, ts, rs, per = [], [], [], {}
    ew_out, ew_t, ew_in = [], [], []
    for i, (name, frame) in enumerate(frames):
        clip, motions = motion_clip(frame, clip_len, seed=1000 + i)
        cfg = PipelineConfig(style=style, styles_dirs=[str(pack_dir)], include_user_styles=False,
                             include_shipped_styles=False, segmentation=False, backend="cpu", cpu_engine="eager",
                             crossfade_ms=0.0, person=Treatment("style"), background=Treatment("style"),
                             device_path=False, guide="keyframes", guide_fps=fps)
        with Pipeline(cfg) as pipe:
            pipe.guides.lag_frames = lag
            pipe.guides.cache_dir = teacher_cache
            outs = [np.ascontiguousarray(pipe.process(np.ascontiguousarray(f[:, :, ::-1]))[0][:, :, ::-1])
                    for f in clip]
            status = pipe.guide_text()
        progress(f"{name}: {status}; teacher on {scored} frames at {frame.shape[1]}x{frame.shape[0]}")
        sel = list(range(clip_len - scored, clip_len))
        x = [clip[j].astype(np.float32) / 255.0 for j in sel]
        t = [_teacher_on(teacher, clip[j], cache) for j in sel]
        r = [outs[j].astype(np.float32) / 255.0 for j in sel]
        per[name] = round(_fg(np.stack(x), np.stack(t), np.stack(r)), 4)
        mot = motions[sel[0]:sel[-1]]
        ew_out.append(ewarp_np(r, mot))
        ew_t.append(ewarp_np(t, mot))
        ew_in.append(ewarp_np(x, mot))
        xs += x
        ts += t
        rs += r
    worst = min(per, key=per.get)
    cat = [np.stack(a) for a in (xs, ts, rs)]
    return {"fidelity_gain": round(_fg(*cat), 4), "fidelity_gain_min": per[worst],
            "fidelity_gain_min_picture": worst, "per_picture": per,
            "ewarp_student": round(float(np.mean(ew_out)), 6), "ewarp_teacher": round(float(np.mean(ew_t)), 6),
            "ewarp_input": round(float(np.mean(ew_in)), 6),
            "eval": {"mode": "guided as live", "pictures": list(per), "output": f"{frames[0][1].shape[1]}x"
                     f"{frames[0][1].shape[0]}", "clip": f"{clip_len} frames at {fps:g} fps with motion",
                     "map_age": f">= {lag_s:g} s", "scored_frames_per_picture": scored}}


# --------------------------------------------------------------------------------------------
# make styles: a recipe of guided styles without a student
# --------------------------------------------------------------------------------------------

def guide_entry(recipe, style: dict, default_map: np.ndarray) -> dict:
    """The ``guide`` entry of a style in ``pack.json``: the recipe's pinned teacher and guide settings."""
    t = recipe.teachers[style["teacher"]]
    g = {k: v for k, v in recipe.guide.items() if k != "student"}
    teacher = {"name": Path(t.file).name, "package": t.package, "version": t.version, "file": t.file,
               "sha256": t.sha256, "options": json_copy(style.get("options", {}))}
    if t.archive != "wheel":
        teacher["archive"] = t.archive
    return {"teacher": teacher, **g, "default_map": np.round(default_map, 6).tolist()}


def json_copy(d):
    import json

    return json.loads(json.dumps(d))


def build_guided_pack(recipe, teacher_paths: dict[str, Path], train: Sequence[str], out: Path,
                      progress: Callable[[str], None] = print) -> Path:
    """Fit every style's default map on the training photos and write the pack (no student) to ``out``."""
    from realtime.styles import save_guided_pack
    from training.data import ImageSet
    from training.teachers import load_teacher

    images = ImageSet(list(train))
    pictures = [images.load(it) for it in images.items]
    styles = []
    for s in recipe.styles:
        t = recipe.teachers[s["teacher"]]
        teacher = load_teacher(teacher_paths[s["teacher"]], **json_copy(s.get("options", {})))
        keyframe = tuple(recipe.guide["keyframe"])
        progress(f"[{recipe.name}] {s['id']}: fitting the default map on {len(pictures)} training photos "
                 f"at {keyframe[0]}x{keyframe[1]}")
        dm = fit_default_map(teacher, pictures, keyframe)
        styles.append({"id": s["id"], "name": s["name"],
                       "teacher": {"name": Path(t.file).name, "sha256": t.sha256,
                                   "options": json_copy(s.get("options", {})), "license": t.license,
                                   "source": f"{t.source} (pip package {t.package}=={t.version}, file {t.file})"},
                       "guide": guide_entry(recipe, s, dm)})
    if out.exists():
        import shutil

        shutil.rmtree(out)
    return save_guided_pack(out, {"name": recipe.name, "description": recipe.description, "styles": styles})


def map_gmacs(size: tuple[int, int] = FRAME_SIZE) -> float:
    """Multiply–adds of the quadratic map on one frame: 9 terms × 3 channels per pixel (+ 6 products)."""
    return round(size[0] * size[1] * (27 + 6) / 1e9, 4)


def evaluate_guided_recipe(pack_dir: Path, recipe, teacher_paths: dict[str, Path], cache: Path,
                           progress: Callable[[str], None] = print) -> dict[str, dict]:
    """Score each style as live on the selection set (the decision) and the reporting set (quoted in
    ``pack.json``); write the reporting metrics, with the selection ones under ``selection``."""
    import json

    from training.teachers import load_teacher

    results = {}
    meta = json.loads((pack_dir / "pack.json").read_text())
    sets = {which: held_out_frames(cache, which) for which in ("selection", "reporting")}
    for sm in meta["styles"]:
        s = next(x for x in recipe.styles if x["id"] == sm["id"])
        teacher = load_teacher(teacher_paths[s["teacher"]], **json_copy(s.get("options", {})))
        got = {}
        for which, frames in sets.items():
            progress(f"[{recipe.name}] {s['id']}: scoring as live on the {which} set "
                     f"({', '.join(n for n, _ in frames)})")
            got[which] = evaluate_guided(pack_dir, sm["id"], teacher, frames, cache=cache / "eval-teacher-outputs",
                                         progress=lambda m: progress(f"[{recipe.name}]   {m}"), teacher_cache=cache)
        m = dict(got["reporting"])
        m["eval"]["set"] = "reporting"
        m["selection"] = {k: got["selection"][k] for k in ("fidelity_gain", "fidelity_gain_min",
                                                            "fidelity_gain_min_picture", "ewarp_student",
                                                            "ewarp_teacher")}
        m["gmacs_640x480"] = map_gmacs()
        sm["metrics"] = m
        results[sm["id"]] = got
    tmp = pack_dir / "pack.json.tmp"
    tmp.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    tmp.replace(pack_dir / "pack.json")
    return results


def decide_on_selection(pack_dir: Path, recipe) -> tuple[list[str], dict[str, list[str]]]:
    """Which styles meet the recipe's targets on the selection set, and why the others do not."""
    import json

    from training.recipes.targets import style_failures

    meta = json.loads((pack_dir / "pack.json").read_text())
    keep, refused = [], {}
    for sm in meta["styles"]:
        m = {**sm["metrics"], **sm["metrics"].get("selection", {})}
        why = style_failures(m, recipe.targets)
        (refused.__setitem__(sm["id"], why) if why else keep.append(sm["id"]))
    return keep, refused


def write_guided_pack_subset(src: Path, keep: list[str], dst: Path, extra_meta: dict, pic: np.ndarray,
                             teacher_cache: Path | None = None) -> Path:
    """The kept styles of a guided pack with ``extra_meta`` and previews (the style steered by a keyframe
    of the held-out portrait ``pic``, uint8 RGB) written to ``dst``."""
    import json

    from realtime.composite import Treatment
    from realtime.pipeline import Pipeline, PipelineConfig
    from realtime.styles import save_guided_pack

    meta = json.loads((src / "pack.json").read_text())
    meta["styles"] = [s for s in meta["styles"] if s["id"] in keep]
    meta.update(extra_meta)
    save_guided_pack(dst, meta)
    frame = camera_frame(pic, (320, 240))[:, :, ::-1]
    (dst / "previews").mkdir(exist_ok=True)
    for s in meta["styles"]:
        cfg = PipelineConfig(style=s["id"], styles_dirs=[str(dst)], include_user_styles=False,
                             include_shipped_styles=False, segmentation=False, backend="cpu", crossfade_ms=0.0,
                             person=Treatment("style"), background=Treatment("style"), guide="keyframes")
        with Pipeline(cfg) as p:
            p.guides.cache_dir = teacher_cache
            out = p.process(np.ascontiguousarray(frame))[0]
        rel = f"previews/{s['id']}.jpg"
        cv2.imwrite(str(dst / rel), cv2.resize(out, (160, 120), interpolation=cv2.INTER_AREA),
                    [cv2.IMWRITE_JPEG_QUALITY, 85])
        s["preview"] = rel
    return save_guided_pack(dst, meta)


# --------------------------------------------------------------------------------------------
# stylecam distill --guide on|auto
# --------------------------------------------------------------------------------------------

def _local_guide(spec, default_map: np.ndarray, apply_to: str, keyframe=(160, 120), cadence_ms=500.0) -> dict:
    """A guide entry for a user's teacher file (by path; nothing to fetch)."""
    return {"teacher": {"name": Path(spec.teacher).name, "path": str(Path(spec.teacher).resolve()),
                        "options": json_copy(spec.options)},
            "keyframe": list(keyframe), "cadence_ms": cadence_ms, "map": "quadratic", "blend": 0.5,
            "apply_to": apply_to, "default_map": np.round(default_map, 6).tolist()}


def _pictures(sources: Sequence[str]) -> list[np.ndarray]:
    from training.data import ImageSet

    images = ImageSet(list(sources))
    return [images.load(it) for it in images.items]


def guided_only_pack(styles, data: Sequence[str], out: Path, name: str = "", description: str = "",
                     progress: Callable[[str], None] = print) -> Path:
    """A pack of guided styles without a student: each style's default map fitted on ``data``."""
    from realtime.styles import save_guided_pack
    from training.teachers import load_teacher

    pics = _pictures(data)
    entries = []
    for s in styles:
        teacher = load_teacher(s.teacher, **json_copy(s.options))
        progress(f"{s.id}: fitting the default map on {len(pics)} picture(s) at 160x120")
        dm = fit_default_map(teacher, pics, (160, 120))
        entries.append({"id": s.id, "name": s.name or s.id,
                        "teacher": {"name": teacher.name, "sha256": teacher.sha256, "options": teacher.options,
                                    "license": s.license, "source": s.source},
                        "guide": _local_guide(s, dm, "input")})
    return save_guided_pack(out, {"name": name or Path(out).name, "description": description, "styles": entries})


def score_pack_as_live(pack_dir: Path, styles, held_out: Sequence[str], cache: Path | None,
                       progress: Callable[[str], None] = print) -> dict[str, dict]:
    """Every style of a pack scored as live on ``held_out`` pictures (their teachers from ``styles``)."""
    from training.teachers import load_teacher

    frames = [(f"picture{i}", camera_frame(p)) for i, p in enumerate(_pictures(held_out))]
    return {s.id: evaluate_guided(pack_dir, s.id, load_teacher(s.teacher, **json_copy(s.options)), frames,
                                  cache=cache, progress=progress) for s in styles}


def write_metrics(pack_dir: Path, metrics: dict[str, dict], key: str | None = None) -> None:
    """Put ``metrics[style_id]`` into ``pack.json`` (under ``key`` inside each style's metrics, if given)."""
    import json

    p = Path(pack_dir) / "pack.json"
    meta = json.loads(p.read_text())
    for s in meta["styles"]:
        if s["id"] in metrics:
            if key is None:
                s["metrics"] = {**s.get("metrics", {}), **metrics[s["id"]]}
            else:
                s.setdefault("metrics", {})[key] = metrics[s["id"]]
    tmp = p.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    tmp.replace(p)


def set_guides(pack_dir: Path, guides: dict[str, dict | None]) -> None:
    """Add (or, with ``None``, remove) styles' guide entries in a student pack's ``pack.json``."""
    import json

    from realtime.styles import load_pack

    p = Path(pack_dir) / "pack.json"
    meta = json.loads(p.read_text())
    for s in meta["styles"]:
        if s["id"] in guides:
            g = guides[s["id"]]
            if g is None:
                s.pop("guide", None)
            else:
                s["guide"] = g
    tmp = p.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    tmp.replace(p)
    load_pack(pack_dir)


def choose_guidance(pack_dir: Path, styles, held_out: Sequence[str], cache: Path | None, min_gain: float = 0.02,
                    progress: Callable[[str], None] = print) -> dict[str, str]:
    """``--guide auto`` on a student pack: score each style as live unguided, and guided with the map
    correcting the student's output and its input; keep the better guidance only where it raises
    fidelity_gain by at least ``min_gain``. Returns ``{style_id: "off" | "student" | "input"}``."""
    ident = np.eye(10, 3)  # the identity map: without its teacher a guided student style is the student alone
    set_guides(pack_dir, {s.id: None for s in styles})
    scores = {"off": score_pack_as_live(pack_dir, styles, held_out, cache, progress)}
    for mode in ("student", "input"):
        set_guides(pack_dir, {s.id: _local_guide(s, ident, mode) for s in styles})
        scores[mode] = score_pack_as_live(pack_dir, styles, held_out, cache, progress)
    choice, final = {}, {}
    for s in styles:
        base = scores["off"][s.id]["fidelity_gain"]
        best = max(("student", "input"), key=lambda m: scores[m][s.id]["fidelity_gain"])
        gain = scores[best][s.id]["fidelity_gain"] - base
        choice[s.id] = best if gain >= min_gain else "off"
        on_out, on_in = scores["student"][s.id]["fidelity_gain"], scores["input"][s.id]["fidelity_gain"]
        progress(f"{s.id}: as live unguided {base:.3f}, guided on the student's output {on_out:.3f}, "
                 f"on its input {on_in:.3f} → guide {choice[s.id]}")
        final[s.id] = None if choice[s.id] == "off" else _local_guide(s, ident, choice[s.id])
    set_guides(pack_dir, final)
    write_metrics(pack_dir, {s.id: scores[choice[s.id]][s.id] for s in styles}, key="as_live")
    return choice
