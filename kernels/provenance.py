"""Where a benchmark number was measured: machine, package versions and commit, in one shape.

Every benchmark of the project (kernels, pipeline, sources, recorder, segmentation, window)
records :func:`provenance` under the same keys, so results from different tools and machines
can be compared field by field::

    {"machine": {...}, "versions": {...}, "commit": "1a2b3c4" | "1a2b3c4-dirty" | None,
     "created_utc": "2026-01-01T12:00:00+00:00"}

It lives in ``kernels/``, the lowest layer, so every package can import it. Versions are read
from modules already imported (their ``__version__``) or from the installed distributions'
metadata, so asking for them imports nothing heavy.
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent

# Reported name -> (module, distributions that may provide it, in order of preference).
_PACKAGES: dict[str, tuple[str, tuple[str, ...]]] = {
    "torch": ("torch", ("torch",)),
    "numpy": ("numpy", ("numpy",)),
    "opencv": ("cv2", ("opencv-contrib-python", "opencv-python", "opencv-python-headless",
                       "opencv-contrib-python-headless")),
    "mediapipe": ("mediapipe", ("mediapipe",)),
    "av": ("av", ("av",)),
    "onnxruntime": ("onnxruntime", ("onnxruntime", "onnxruntime-gpu")),
    "triton": ("triton", ("triton",)),
    "cupy": ("cupy", ("cupy-cuda13x", "cupy-cuda12x", "cupy")),
    "pyqt": ("PyQt6", ("PyQt6",)),
    "stylecam": ("", ("stylecam",)),
}


def package_version(name: str) -> str | None:
    """Version of one of the packages in :data:`_PACKAGES` (by its reported name), ``None`` if absent."""
    module, dists = _PACKAGES[name]
    mod = sys.modules.get(module) if module else None
    version = getattr(mod, "__version__", None) if mod is not None else None
    if isinstance(version, str):
        return version
    for dist in dists:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return None


def versions(**extra: str | None) -> dict[str, str | None]:
    """Python and package versions; ``extra`` adds tool-specific ones (e.g. ``qt=QT_VERSION_STR``)."""
    v: dict[str, str | None] = {"python": platform.python_version()}
    v.update({name: package_version(name) for name in _PACKAGES})
    v.update(extra)
    return v


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine(**extra: Any) -> dict[str, Any]:
    """CPU, cores, platform, load, and the CUDA device when torch has already started CUDA.

    ``extra`` adds tool-specific fields (threads used, the device timed on).
    """
    try:
        load = round(os.getloadavg()[0], 2)
    except OSError:  # not available on this platform
        load = None
    info: dict[str, Any] = {"cpu": cpu_model(), "cores": os.cpu_count(), "arch": platform.machine(),
                            "platform": platform.platform(), "loadavg_1m": load}
    torch = sys.modules.get("torch")
    if torch is not None:
        info["cuda_runtime"] = torch.version.cuda
        # Only ask for the GPU when CUDA is already initialised: asking would otherwise start it.
        if torch.cuda.is_initialized():
            info["gpu"] = torch.cuda.get_device_name()
    info.update(extra)
    return info


def git_commit() -> str | None:
    """Short commit of the checkout the code runs from, ``-dirty`` when tracked files changed; ``None`` outside git."""
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                             timeout=5)
        if out.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                               capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() + ("-dirty" if dirty else "")


def provenance(machine_extra: dict[str, Any] | None = None, **version_extra: str | None) -> dict[str, Any]:
    """``machine``, ``versions``, ``commit`` and ``created_utc``, ready to merge into a benchmark's JSON."""
    return {"machine": machine(**(machine_extra or {})), "versions": versions(**version_extra),
            "commit": git_commit(),
            "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
