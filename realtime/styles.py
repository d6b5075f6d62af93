"""Style packs and the style registry.

A style pack is a directory::

    my-pack/
      model.safetensors   # StudentNet state dict (one network, one CIN row per style)
      pack.json           # schema below
      previews/*.jpg      # optional thumbnails, one per style

``pack.json`` (``schema_version`` 1)::

    {"schema_version": 1, "name": "portraits", "description": "...", "license": "...",
     "architecture": {"arch": "cin-resnet-s", "width": 16, "num_styles": 2},
     "resolution": [320, 240],             # (w, h) the students were trained to run at (optional)
     "styles": [{"id": "candy", "name": "Candy", "preview": "previews/candy.jpg",
                 "teacher": {"name": "...", "sha256": "...", "options": {}, "license": "...", "source": "..."},
                 "metrics": {"fidelity_gain": 0.85, ...},
                 "guide": {...}},                  # optional: a guided style (see realtime.guide)
                ...],
     "recipe": {...}}

A pack whose styles are all guided may come without a student: no ``model.safetensors`` and no
``architecture``; each style is then its colour map alone.

The registry looks in ``--styles DIR`` (a pack, or a folder of packs), then the user's data
directory (``$XDG_DATA_HOME/stylecam/styles``), then the shipped ``assets/styles/``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import torch

from .errors import InputError
from .guide import GuideSpec, parse_guide
from .student import StudentNet, architectures, build_student

SCHEMA_VERSION = 1
ASSETS_DIR = Path(__file__).resolve().parent.parent / "assets"
SHIPPED_STYLES = ASSETS_DIR / "styles"
HOTKEYS = ["1", "2", "3", "4", "5", "6", "7", "8", "9", "0"]


class PackError(InputError):
    """A style pack is missing, corrupt or does not match its description."""


@dataclass
class StyleInfo:
    id: str
    name: str
    pack: str
    index: int  # row in the pack's CIN bank
    preview: Path | None = None
    metrics: dict = field(default_factory=dict)
    teacher: dict = field(default_factory=dict)
    hotkey: str | None = None
    guide: GuideSpec | None = None
    student: bool = True  # False: a guided style whose pack has no student (its map alone)
    learned: dict = field(default_factory=dict)  # for looks learned from photos: where from, how long

    @property
    def key(self) -> str:
        return f"{self.pack}/{self.id}"

    def to_json(self) -> dict:
        d = {"id": self.id, "name": self.name, "pack": self.pack, "hotkey": self.hotkey,
             "metrics": self.metrics, "teacher": self.teacher,
             "preview": str(self.preview) if self.preview else None}
        if self.guide is not None:
            d["guide"] = {**self.guide.to_json(with_map=False), "student": self.student}
        if self.learned:
            d["learned"] = self.learned
        return d


@dataclass
class StylePack:
    path: Path
    name: str
    meta: dict
    styles: list[StyleInfo]
    state_dict: dict[str, torch.Tensor]

    @property
    def architecture(self) -> dict:
        return self.meta["architecture"]

    @property
    def has_student(self) -> bool:
        """False for a pack of guided styles only (no ``model.safetensors``)."""
        return "architecture" in self.meta

    @property
    def order(self) -> int:
        """Its place among the packs of its folder (``pack.json`` "order", 0 when absent)."""
        return self.meta.get("order", 0)

    @property
    def resolution(self) -> tuple[int, int] | None:
        r = self.meta.get("resolution")
        return (int(r[0]), int(r[1])) if r else None

    @property
    def kind(self) -> str:
        """``"lut"`` for an image-adaptive 3D LUT model (applied per pixel at full resolution), else ``"cin"``."""
        from .lut import is_lut_arch

        return "lut" if is_lut_arch(self.architecture["arch"]) else "cin"

    def build(self) -> StudentNet:
        """A fresh student with this pack's weights (eval mode, float32, CPU): a :class:`StudentNet`,
        or a ``realtime.lut.LutNet`` for a LUT pack (same call signature)."""
        a = self.architecture
        net = build_student(a["arch"], int(a["width"]), int(a["num_styles"]), a.get("mix", "linear"))
        net.load_state_dict(self.state_dict)
        return net.eval()


def _fail(path: Path, msg: str) -> PackError:
    return PackError(f"style pack {path}: {msg}")


def load_pack(path: str | os.PathLike) -> StylePack:
    """Load and validate a style pack directory; raise :class:`PackError` naming the problem."""
    path = Path(path)
    meta_path, weights_path = path / "pack.json", path / "model.safetensors"
    if not path.is_dir():
        raise _fail(path, "not a directory")
    if not meta_path.is_file():
        raise _fail(path, "pack.json is missing")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise _fail(path, f"pack.json is not valid JSON ({e})") from None
    if not isinstance(meta, dict):
        raise _fail(path, "pack.json must hold a JSON object")
    ver = meta.get("schema_version")
    if ver != SCHEMA_VERSION:
        raise _fail(path, f"schema_version {ver!r} is not supported (expected {SCHEMA_VERSION})")
    order = meta.get("order", 0)
    if isinstance(order, bool) or not isinstance(order, int):
        raise _fail(path, f"'order' must be an integer (its place among the packs of its folder), got {order!r}")
    styles_meta = meta.get("styles")
    if not isinstance(styles_meta, list) or not styles_meta:
        raise _fail(path, "'styles' must be a non-empty list")
    guides: list[GuideSpec | None] = []
    for i, s in enumerate(styles_meta):
        if not isinstance(s, dict) or not s.get("id"):
            raise _fail(path, f"styles[{i}] needs an 'id'")
        try:
            guides.append(parse_guide(s["guide"], f"styles[{i}] ({s['id']})") if "guide" in s else None)
        except InputError as e:
            raise _fail(path, str(e)) from None
    has_student = "architecture" in meta
    state: dict[str, torch.Tensor] = {}
    if not has_student:
        if not all(guides):
            raise _fail(path, "has no 'architecture' (no student), so every style needs a 'guide'")
    else:
        state = _load_student(path, meta, weights_path, len(styles_meta))
    pack_name = str(meta.get("name") or path.name)
    styles, seen = [], set()
    for i, (s, g) in enumerate(zip(styles_meta, guides)):
        sid = str(s["id"])
        if sid in seen:
            raise _fail(path, f"style id {sid!r} appears twice")
        seen.add(sid)
        prev = s.get("preview")
        styles.append(StyleInfo(id=sid, name=str(s.get("name") or sid), pack=pack_name, index=i,
                                preview=(path / prev) if prev and (path / prev).is_file() else None,
                                metrics=dict(s.get("metrics") or {}), teacher=dict(s.get("teacher") or {}),
                                guide=g, student=has_student, learned=dict(s.get("learned") or {})))
    return StylePack(path=path, name=pack_name, meta=meta, styles=styles, state_dict=state)


def _load_student(path: Path, meta: dict, weights_path: Path, n_listed: int) -> dict[str, torch.Tensor]:
    arch = meta.get("architecture")
    if not isinstance(arch, dict) or arch.get("arch") not in architectures():
        raise _fail(path, f"architecture.arch must be one of {architectures()}, got {arch!r}")
    try:
        width, n_styles = int(arch["width"]), int(arch["num_styles"])
    except (KeyError, TypeError, ValueError):
        raise _fail(path, "architecture needs integer 'width' and 'num_styles'") from None
    if n_listed != n_styles:
        raise _fail(path, f"lists {n_listed} styles but architecture.num_styles is {n_styles}")
    if not weights_path.is_file():
        raise _fail(path, "model.safetensors is missing")
    try:
        from safetensors.torch import load_file

        state = load_file(str(weights_path))
    except Exception as e:  # safetensors raises several types for corrupt files
        raise _fail(path, f"model.safetensors cannot be read ({type(e).__name__}: {e})") from None
    try:
        expected = build_student(arch["arch"], width, n_styles, arch.get("mix", "linear")).state_dict()
    except ValueError as e:
        raise _fail(path, str(e)) from None
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise _fail(path, f"weights do not match {arch['arch']} width {width}: "
                          f"missing {missing[:5]}{'…' if len(missing) > 5 else ''}, "
                          f"unexpected {unexpected[:5]}{'…' if len(unexpected) > 5 else ''}")
    bad = [k for k, v in expected.items() if tuple(state[k].shape) != tuple(v.shape)]
    if bad:
        k = bad[0]
        raise _fail(path, f"weight {k} has shape {tuple(state[k].shape)}, expected {tuple(expected[k].shape)}")
    # A NaN or Inf weight makes every output NaN, which the pipeline would show as the unstyled input.
    broken = [k for k, v in state.items() if v.is_floating_point() and not bool(v.isfinite().all())]
    if broken:
        raise _fail(path, f"model.safetensors holds NaN or Inf values in {len(broken)} weight(s), "
                          f"e.g. {broken[0]}; re-export or re-train the pack")
    return state


def save_guided_pack(path: str | os.PathLike, meta: dict) -> Path:
    """Write a pack of guided styles without a student (``pack.json`` only; every style has a ``guide``)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    meta = {k: v for k, v in meta.items() if k != "architecture"}
    meta["schema_version"] = SCHEMA_VERSION
    (path / "model.safetensors").unlink(missing_ok=True)
    tmpj = path / "pack.json.tmp"
    tmpj.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    os.replace(tmpj, path / "pack.json")
    load_pack(path)  # what was written must load
    return path


def save_pack(path: str | os.PathLike, net: StudentNet, meta: dict) -> Path:
    """Write ``net`` and ``meta`` as a pack (``schema_version`` and ``architecture`` are filled in)."""
    from safetensors.torch import save_file

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    meta = dict(meta)
    meta["schema_version"] = SCHEMA_VERSION
    meta["architecture"] = net.config()
    if len(meta.get("styles", [])) != net.num_styles:
        raise ValueError(f"meta lists {len(meta.get('styles', []))} styles, the network has {net.num_styles}")
    state = {k: v.detach().float().cpu().contiguous() for k, v in net.state_dict().items()}
    tmp = path / "model.safetensors.tmp"
    save_file(state, str(tmp))
    os.replace(tmp, path / "model.safetensors")
    tmpj = path / "pack.json.tmp"
    tmpj.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    os.replace(tmpj, path / "pack.json")
    return path


def user_styles_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "stylecam" / "styles"


def _pack_dirs(root: Path) -> list[Path]:
    """``root`` itself if it is a pack, else its immediate sub-directories that look like packs."""
    if (root / "pack.json").exists():
        return [root]
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if (p / "pack.json").exists())


class StyleRegistry:
    """Every style the user can pick, in hotkey order, with its pack loaded on demand."""

    def __init__(self, extra_dirs: Iterable[str | os.PathLike] = (), include_user: bool = True,
                 include_shipped: bool = True):
        roots: list[Path] = []
        for d in extra_dirs:
            d = Path(d)
            if not d.exists():
                raise PackError(f"--styles {d}: no such directory")
            if not _pack_dirs(d):
                raise PackError(f"--styles {d}: no style pack here (expected pack.json in it or its sub-folders)")
            roots.append(d)
        if include_user:
            roots.append(user_styles_dir())
        if include_shipped:
            roots.append(SHIPPED_STYLES)
        self.packs: dict[str, StylePack] = {}
        self.styles: list[StyleInfo] = []
        self.warnings: list[str] = []
        for root in roots:
            loaded: list[StylePack] = []
            for pdir in _pack_dirs(root):
                try:
                    loaded.append(load_pack(pdir))
                except PackError as e:
                    if any(Path(d) in (pdir, pdir.parent) for d in extra_dirs):
                        raise  # the user pointed at it: fail loudly
                    self.warnings.append(str(e))
            for pack in sorted(loaded, key=lambda p: (p.order, p.path.name)):
                if pack.name in self.packs:
                    continue  # an earlier root shadows packs of the same name
                self.packs[pack.name] = pack
                self.styles.extend(pack.styles)
        for s, key in zip(self.styles, HOTKEYS):
            s.hotkey = key

    def __len__(self) -> int:
        return len(self.styles)

    def find(self, name: str) -> StyleInfo:
        """Look a style up by ``pack/id``, id, or display name (case-insensitive)."""
        q = name.strip().lower()
        for pred in (lambda s: s.key.lower() == q, lambda s: s.id.lower() == q,
                     lambda s: s.name.lower() == q):
            for s in self.styles:
                if pred(s):
                    return s
        known = ", ".join(s.id for s in self.styles) or "none installed"
        raise PackError(f"--style {name}: no such style (available: {known})")

    def pack_of(self, style: StyleInfo) -> StylePack:
        return self.packs[style.pack]
