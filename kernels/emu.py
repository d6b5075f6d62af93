"""Run ``composite.cu`` on the CPU: compiled by g++ through ``cuda_emu.h``, launched via ctypes.

This is a verification tool, not a fast path: every thread of every block is one ctypes call,
in launch order, so the arithmetic of the CUDA source is checked against the references
on machines without a GPU. Keep images small (tens of pixels a side).

Example::

    runner = EmuRunner.build()
    out = composite_ops.composite(frame, mask, fg, None, "delta", "image", 0.4, 0.1, 1.0, runner)
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import torch

from kernels import composite_ops
from kernels.composite_ops import Launch
from kernels.errors import KernelInputError

HEADER_PATH = Path(__file__).with_name("cuda_emu.h")
_CTYPE = {"i32": ctypes.c_int, "f32": ctypes.c_float, "ptr": ctypes.c_void_p}


def find_compiler() -> str | None:
    """The host C++ compiler (``$CXX``, else g++ / c++ / clang++ on PATH), or None."""
    for cand in (os.environ.get("CXX"), "g++", "c++", "clang++"):
        if cand and shutil.which(cand):
            return shutil.which(cand)
    return None


def build_library(cxx: str | None = None) -> Path:
    """Compile ``composite.cu`` + ``cuda_emu.h`` into a shared library, cached by content hash.

    Raises:
        RuntimeError: no compiler, or the compiler's error output.
    """
    cxx = cxx or find_compiler()
    if cxx is None:
        raise RuntimeError("no C++ compiler found (set CXX or install g++)")
    opts = [*composite_ops.compile_options(), "-std=c++17", "-O1", "-fPIC", "-shared",
            "-ffp-contract=off", "-Wall", "-Werror", "-Wno-unused-function"]
    digest = hashlib.sha256()
    for part in (composite_ops.source(), HEADER_PATH.read_text(), cxx, " ".join(opts)):
        digest.update(part.encode())
    out = Path(tempfile.gettempdir()) / f"stylecam-composite-emu-{digest.hexdigest()[:16]}.so"
    if out.exists():
        return out
    tmp = out.with_suffix(f".{os.getpid()}.tmp")
    cmd = [cxx, *opts, "-include", str(HEADER_PATH), "-x", "c++", str(composite_ops.SOURCE_PATH), "-o", str(tmp)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"{Path(cxx).name} failed to compile composite.cu:\n{res.stderr}")
    os.replace(tmp, out)  # atomic: parallel builds never see a half-written library
    return out


class EmuRunner:
    """Executes :class:`~kernels.composite_ops.Launch` descriptions on CPU tensors, thread by thread."""

    name = "emulated"

    def __init__(self, lib_path: Path):
        self.lib = ctypes.CDLL(str(lib_path))
        u = ctypes.c_uint
        self.lib.emu_set_dims.argtypes = [u] * 6
        self.lib.emu_set_index.argtypes = [u] * 6

    @classmethod
    def build(cls, cxx: str | None = None) -> "EmuRunner":
        return cls(build_library(cxx))

    def check_device(self, name: str, device: torch.device) -> None:
        if device.type != "cpu":
            raise KernelInputError(f"{name}: the emulated kernels need CPU tensors, got {device}")

    def __call__(self, launch: Launch) -> None:
        fn = getattr(self.lib, launch.kernel)
        fn.argtypes = [_CTYPE[a.kind] for a in launch.args]
        fn.restype = None
        cargs = []
        for a in launch.args:
            if a.kind == "ptr":
                cargs.append(None if a.value is None else ctypes.c_void_p(a.value.data_ptr()))
            else:
                cargs.append(a.value)
        (gx, gy, gz), (bx, by, bz) = launch.grid, launch.block
        self.lib.emu_set_dims(gx, gy, gz, bx, by, bz)
        set_index = self.lib.emu_set_index
        for kz in range(gz):
            for ky in range(gy):
                for kx in range(gx):
                    for tz in range(bz):
                        for ty in range(by):
                            for tx in range(bx):
                                set_index(kx, ky, kz, tx, ty, tz)
                                fn(*cargs)
