"""The Triton kernels compile all the way to CUBIN for sm_80/89/90 — ahead of time, no GPU needed.

The interpreter (test_triton_norm.py) checks the arithmetic but not what only the compiler
sees (types of values merged across runtime branches, constexpr specialisation of arguments
equal to 1, register-tile shapes). Triton's own ``ptxas`` finishes the build.
"""

import pytest
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from kernels import triton_norm as tn

INT_ARGS = {"C", "HW", "S", "CHUNK", "SPLIT"}


def _compile(kernel, arch: int, dtype: str, constexprs: dict, num_warps: int = 4):
    fn = kernel
    sig = {}
    for name in fn.arg_names:
        if name in constexprs:
            sig[name] = "constexpr"
        elif name.endswith("_ptr"):
            sig[name] = {"x_ptr": f"*{dtype}", "y_ptr": f"*{dtype}", "res_ptr": f"*{dtype}",
                         "sel_ptr": "*i64", "gamma_ptr": f"*{dtype}", "beta_ptr": "*fp32"}.get(name, "*fp32")
        elif name in ("eps", "momentum"):
            sig[name] = "fp32"
        else:
            sig[name] = "i32"
    src = ASTSource(fn=fn, signature=sig, constexprs=constexprs)
    return triton.compile(src, target=GPUTarget("cuda", arch, 32), options={"num_warps": num_warps})


FUSED = {
    "sm90-fp16-index-leaky-res-state-split-cl": (90, "fp16", dict(
        SEL_MODE=1, ACT=2, HAS_RES=True, HAS_STATE_IN=True, WRITE_STATE=True, SPLIT_P2=8, ONE_TILE=False,
        BLOCK=4096, BLOCK_C=32)),
    "sm89-fp16-rows-relu-nchw-looped": (89, "fp16", dict(
        SEL_MODE=0, ACT=1, HAS_RES=False, HAS_STATE_IN=False, WRITE_STATE=False, SPLIT_P2=1, ONE_TILE=False,
        BLOCK=2048, BLOCK_C=1, SPLIT=1, stride_xhw=1, stride_yhw=1, stride_rhw=1)),
    "sm80-bf16-blend-onetile": (80, "bf16", dict(
        SEL_MODE=2, ACT=1, HAS_RES=True, HAS_STATE_IN=False, WRITE_STATE=True, SPLIT_P2=1, ONE_TILE=True,
        BLOCK=1024, BLOCK_C=1, SPLIT=1, CHUNK=1)),
    "sm90-fp32-largest-tile-once": (90, "fp32", dict(
        SEL_MODE=0, ACT=1, HAS_RES=True, HAS_STATE_IN=False, WRITE_STATE=False, SPLIT_P2=1, ONE_TILE=True,
        BLOCK=16384, BLOCK_C=1, SPLIT=1, stride_xhw=1, stride_yhw=1, stride_rhw=1)),
    "sm90-fp32-1x1-planes": (90, "fp32", dict(
        SEL_MODE=1, ACT=0, HAS_RES=False, HAS_STATE_IN=True, WRITE_STATE=True, SPLIT_P2=1, ONE_TILE=True,
        BLOCK=512, BLOCK_C=1, SPLIT=1, HW=1, C=1, S=1, CHUNK=1)),
}


@pytest.mark.parametrize("case", list(FUSED), ids=list(FUSED))
def test_fused_kernel_compiles(case):
    arch, dtype, const = FUSED[case]
    compiled = _compile(tn._cin_fused_kernel, arch, dtype, const, num_warps=16 if const["BLOCK"] >= 8192 else (8 if const["BLOCK"] >= 2048 else 4))
    assert compiled.asm["cubin"][:4] == b"\x7fELF"
    assert "_cin_fused_kernel" in compiled.asm["ptx"]


@pytest.mark.parametrize("arch,dtype,block_c", [(80, "fp16", 1), (90, "bf16", 32)])
def test_stats_kernel_compiles(arch, dtype, block_c):
    compiled = _compile(tn._cin_stats_kernel, arch, dtype, dict(BLOCK=2048, BLOCK_C=block_c))
    assert compiled.asm["cubin"][:4] == b"\x7fELF"


def test_gpu_configs_are_autotuned():
    # Under the interpreter the list is one config; compiled, the autotuner picks among several.
    assert not tn.INTERPRET and len(tn._CONFIGS) >= 4
    assert all(c.kwargs["BLOCK"] & (c.kwargs["BLOCK"] - 1) == 0 for c in tn._CONFIGS)


def test_compiled_kernel_rejects_cpu_tensors():
    import torch

    from kernels.errors import KernelInputError

    with pytest.raises(KernelInputError, match="x: the Triton kernel needs a CUDA tensor"):
        tn.cond_instance_norm(torch.zeros(1, 2, 3, 3), torch.ones(1, 2), torch.zeros(1, 2))


def test_bench_model_uses_the_largest_tile():
    from kernels import benchmarks as bench

    assert bench.FUSED_MAX_TILE == tn.MAX_TILE


def test_one_tile_planes_only_time_one_tile_configs():
    fits = tn._one_tile_configs(tn._CONFIGS, {"SPLIT": 1, "HW": 3000}, BLOCK_C=1)
    assert fits and all(c.kwargs["BLOCK"] >= 3000 for c in fits)
    assert tn._one_tile_configs(tn._CONFIGS, {"SPLIT": 1, "HW": 10**6}, BLOCK_C=1) == tn._CONFIGS
    assert tn._one_tile_configs(tn._CONFIGS, {"SPLIT": 4, "HW": 100}, BLOCK_C=1) == tn._CONFIGS
