"""Targets a style must meet before it ships, and cutting a pack down to the styles that pass."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

from realtime.styles import load_pack, save_pack
from realtime.student import StudentNet, is_style_bank


def style_failures(metrics: dict, targets: dict[str, float]) -> list[str]:
    """Why a style's metrics miss ``targets`` (empty when it meets them all).

    Targets: ``fidelity_gain_min`` (fidelity_gain ≥ it), ``fidelity_gain_picture_min`` (the worst
    picture's fidelity_gain, metric ``fidelity_gain_min``, ≥ it), ``ewarp_ratio_max`` (ewarp_student ≤ it ×
    ewarp_teacher), ``gmacs_640x480_max``. A metric that is missing counts as a miss.
    """
    why: list[str] = []

    def get(name: str) -> float | None:
        v = metrics.get(name)
        return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None

    if "fidelity_gain_min" in targets:
        v, t = get("fidelity_gain"), targets["fidelity_gain_min"]
        if v is None:
            why.append("fidelity_gain was not measured")
        elif v < t:
            why.append(f"fidelity_gain {v:.3f} < target {t:g}")
    if "fidelity_gain_picture_min" in targets:
        v, t = get("fidelity_gain_min"), targets["fidelity_gain_picture_min"]
        if v is None:
            why.append("the per-picture fidelity_gain_min was not measured")
        elif v < t:
            name = metrics.get("fidelity_gain_min_picture")
            why.append(f"fidelity_gain_min {v:.3f} (worst picture{', ' + str(name) if name else ''}) "
                       f"< target {t:g}")
    if "ewarp_ratio_max" in targets:
        s, te, r = get("ewarp_student"), get("ewarp_teacher"), targets["ewarp_ratio_max"]
        if s is None or te is None:
            why.append("ewarp_student/ewarp_teacher were not measured")
        elif s > r * te:
            why.append(f"ewarp_student {s:.5f} > {r:g} × ewarp_teacher {te:.5f} (ratio {s / max(te, 1e-12):.2f})")
    if "gmacs_640x480_max" in targets:
        v, t = get("gmacs_640x480"), targets["gmacs_640x480_max"]
        if v is None:
            why.append("gmacs_640x480 was not measured")
        elif v > t:
            why.append(f"gmacs_640x480 {v:.3f} > target {t:g}")
    return why


def dir_bytes(path: Path) -> int:
    """Total size of the files under ``path`` (0 if it does not exist)."""
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file()) if Path(path).exists() else 0


def subset_pack(src: str | Path, keep: list[str], dst: str | Path, extra_meta: dict | None = None) -> Path:
    """Write a pack holding only the styles ``keep`` (in that order) of pack ``src`` to ``dst``.

    The per-style rows (CIN banks, colour maps) of the kept styles are copied; everything else of the
    network is shared, so a style row's output is unchanged. Only the pack files are written
    (weights, ``pack.json``, previews).
    """
    pack = load_pack(src)
    ids = [s.id for s in pack.styles]
    idx = [ids.index(k) for k in keep]
    a = pack.architecture
    net = StudentNet(a["arch"], int(a["width"]), len(idx))
    sel = torch.tensor(idx)
    state = {}
    for k, v in pack.state_dict.items():
        state[k] = v.index_select(0, sel) if is_style_bank(k) else v
    net.load_state_dict(state)
    meta = {k: v for k, v in pack.meta.items() if k not in ("styles", "schema_version", "architecture")}
    meta["styles"] = [pack.meta["styles"][i] for i in idx]
    meta.update(extra_meta or {})
    dst = Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    for s in meta["styles"]:
        prev = s.get("preview")
        if prev and (Path(src) / prev).is_file():
            (dst / prev).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(Path(src) / prev, dst / prev)
    save_pack(dst, net.eval(), meta)
    return dst
