"""Dispatch: says which implementation runs, and falls back to the references without CUDA."""

import torch

from kernels import dispatch
from kernels import reference as ref


def test_status_is_one_line_with_a_reason():
    ok, reason = dispatch.gpu_status()
    assert isinstance(ok, bool) and reason and "\n" not in reason
    if not torch.cuda.is_available():
        assert not ok and reason.startswith("reference ops: ")
        assert dispatch.student_norm_impl() is None
        p = dispatch.providers()
        assert (p.norm, p.composite) == ("reference", "reference")


def test_cpu_tensors_use_the_references():
    g = torch.Generator().manual_seed(0)
    f = torch.randint(0, 256, (9, 11, 3), dtype=torch.uint8, generator=g)
    m = torch.rand(3, 4, generator=g)
    fg = torch.rand(1, 3, 2, 2, generator=g)
    assert torch.equal(dispatch.composite(f, m, fg, None, "image", "image", 0.4, 0.1, 0.8),
                       ref.composite(f, m, fg, None, "image", "image", 0.4, 0.1, 0.8))
    assert torch.equal(dispatch.prepare(f, 5, 6, torch.float16), ref.prepare(f, 5, 6, torch.float16))
    assert torch.equal(dispatch.masked_blur(f, m, 1.5), ref.masked_blur(f, m, 1.5))
    x = torch.randn(2, 3, 5, 5)
    gr, br = torch.randn(2, 3), torch.randn(2, 3)
    assert torch.equal(dispatch.norm_rows(x, gr, br, "relu", None, 1e-5), ref.norm_rows(x, gr, br, "relu", None, 1e-5))
    y, state = dispatch.cond_instance_norm(x, gr, br, None, "leaky", momentum=0.9)
    assert y.shape == x.shape and state[0].shape == (2, 3)


def test_cupy_launchers_reject_cpu_tensors():
    import pytest

    from kernels import cupy_ops
    from kernels.errors import KernelInputError

    with pytest.raises(KernelInputError, match="frame: the CuPy kernels need CUDA tensors"):
        cupy_ops.composite(torch.zeros(4, 4, 3, dtype=torch.uint8), torch.zeros(2, 2))
