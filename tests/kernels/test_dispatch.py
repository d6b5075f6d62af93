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


def _fake_cuda(monkeypatch, triton_ok: bool, cupy_ok: bool) -> None:
    """Pretend CUDA is present and the provider self-checks pass or fail."""
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "Test GPU")

    def fail(msg):
        def f():
            raise RuntimeError(msg)
        return f

    monkeypatch.setattr(dispatch, "_self_check_triton", (lambda: None) if triton_ok else fail("no sm_75 support"))
    monkeypatch.setattr(dispatch, "_self_check_cupy", (lambda: None) if cupy_ok else fail("nvrtc missing\nmore"))
    dispatch.providers.cache_clear()


def test_status_reasons_name_what_runs(monkeypatch):
    try:
        _fake_cuda(monkeypatch, True, True)
        assert dispatch.gpu_status() == (True, "cuda: triton norm + cupy compositing (Test GPU)")
        assert dispatch.student_norm_impl() is dispatch.norm_rows
        _fake_cuda(monkeypatch, False, True)
        ok, reason = dispatch.gpu_status()
        assert not ok and reason == ("cuda (Test GPU): reference norm + cupy compositing; "
                                     "triton failed (RuntimeError: no sm_75 support)")
        assert dispatch.student_norm_impl() is None
        _fake_cuda(monkeypatch, True, False)
        ok, reason = dispatch.gpu_status()
        assert not ok and reason.endswith("cupy failed (RuntimeError: nvrtc missing)")
        monkeypatch.setenv("TRITON_INTERPRET", "1")
        dispatch.providers.cache_clear()
        assert dispatch.gpu_status()[1].startswith("reference ops: TRITON_INTERPRET=1")
    finally:
        dispatch.providers.cache_clear()


def test_cupy_runner_passes_tensors_by_dlpack_on_torchs_stream(monkeypatch):
    import types

    import numpy as np

    from kernels import composite_ops, cupy_ops

    calls = {}

    class FakeStream:
        def __init__(self, ptr, dev):
            calls["stream"] = (ptr, dev)

        def __enter__(self):
            return self

        def __exit__(self, *a):
            return False

    class FakeDevice:
        def __init__(self, i):
            calls["device"] = i

        def __enter__(self):
            return self

        def __exit__(self, *a):
            return False

    class FakeModule:
        def __init__(self, code, backend, options):
            calls["options"] = options

        def get_function(self, name):
            def launch(grid, block, args, stream):
                calls["launch"] = (name, grid, block, args, stream)
            return launch

    fake = types.SimpleNamespace(
        cuda=types.SimpleNamespace(Device=FakeDevice, ExternalStream=FakeStream),
        RawModule=FakeModule, from_dlpack=lambda t: ("dlpack", t))
    runner = cupy_ops.CupyRunner.__new__(cupy_ops.CupyRunner)
    runner._cp, runner._modules = fake, {}
    t = torch.zeros(2)
    t_cuda = types.SimpleNamespace(device=torch.device("cuda", 0))  # stands in for a CUDA tensor
    monkeypatch.setattr(torch.cuda, "current_stream", lambda dev: types.SimpleNamespace(cuda_stream=1234))
    launch = composite_ops.Launch("composite", (3, 2, 1), (32, 8, 1),
                                  [composite_ops.Arg("ptr", t_cuda), composite_ops.Arg("ptr", None),
                                   composite_ops.Arg("i32", 7), composite_ops.Arg("f32", 0.25)], keep=[t])
    runner(launch)
    name, grid, block, args, stream = calls["launch"]
    assert (name, grid, block) == ("composite", (3, 2, 1), (32, 8, 1))
    assert args[0] == ("dlpack", t_cuda) and args[1] == 0 and args[1].dtype == np.uint64
    assert args[2].dtype == np.int32 and args[3].dtype == np.float32 and args[3] == np.float32(0.25)
    assert calls["stream"] == (1234, 0) and isinstance(stream, FakeStream)
    assert any(o.startswith("-DBLOCK_X=") for o in calls["options"])
