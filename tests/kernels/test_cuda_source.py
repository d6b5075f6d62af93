"""composite.cu builds: NVRTC for the GPUs we target (no GPU needed) and g++ through cuda_emu.h."""

import subprocess

import pytest

from kernels import composite_ops as ops
from kernels import emu


def test_nvrtc_loads_from_the_wheel():
    version, path = ops.nvrtc_version()
    assert version >= (12, 0)
    assert "nvrtc" in path


@pytest.mark.parametrize("arch", ["sm_80", "sm_89", "sm_90"])
def test_nvrtc_compiles_for(arch):
    cubin = ops.compile_nvrtc(arch)
    assert cubin[:4] == b"\x7fELF"
    for name in ops.KERNELS:  # extern "C": unmangled entry points CuPy looks up by name
        assert name.encode() in cubin, f"kernel {name} missing from the {arch} CUBIN"


def test_nvrtc_requires_injected_defines():
    from cupy.cuda import nvrtc

    prog = nvrtc.createProgram(ops.source(), "composite.cu", [], [])
    try:
        with pytest.raises(nvrtc.NVRTCError):
            nvrtc.compileProgram(prog, ["--gpu-architecture=sm_80"])
        assert "BLOCK_X" in nvrtc.getProgramLog(prog)
    finally:
        nvrtc.destroyProgram(prog)


def test_gxx_build_is_warning_free_and_requires_defines(tmp_path):
    assert emu.build_library().exists()  # built with -Wall -Werror
    cxx = emu.find_compiler()
    res = subprocess.run([cxx, "-fsyntax-only", "-include", str(emu.HEADER_PATH), "-x", "c++",
                          str(ops.SOURCE_PATH)], capture_output=True, text=True)
    assert res.returncode != 0 and "BLOCK_X" in res.stderr
