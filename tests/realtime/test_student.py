import pytest
import torch

from realtime.student import REGISTRY, build_student, count_macs, set_norm_impl, style_weights

# The CycleGAN ResnetGenerator teacher: 56.8 GMACs at 256×256.
TEACHER_GMACS_256 = 56.8


@pytest.mark.parametrize("arch", sorted(REGISTRY))
def test_shapes_odd_sizes_and_range(arch):
    net = build_student(arch, width=8, num_styles=3).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.2)
        y = net(torch.rand(2, 3, 37, 53), style_weights(1, 3, batch=2))
    assert y.shape == (2, 3, 37, 53)
    assert y.min() >= 0 and y.max() <= 1


def test_fresh_student_is_identity():
    net = build_student("cin-resnet-s", 8, 2).eval()
    x = torch.rand(1, 3, 32, 48)
    assert torch.allclose(net(x, style_weights(0, 2)), x)


def test_style_rows_and_blends():
    net = build_student("cin-resnet-xs", 8, 2).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.3)
        x = torch.rand(1, 3, 32, 32)
        a, b = net(x, style_weights(0, 2)), net(x, style_weights(1, 2))
        mid = net(x, style_weights([1, 1], 2))
    assert (a - b).abs().max() > 1e-3
    assert not torch.allclose(mid, a) and not torch.allclose(mid, b)


def test_style_weights_validation():
    with pytest.raises(ValueError):
        style_weights(5, 3)
    with pytest.raises(ValueError):
        style_weights([0, 0, 0], 3)
    assert torch.allclose(style_weights([1, 3], 2), torch.tensor([[0.25, 0.75]]))


def test_unknown_arch_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown student architecture"):
        build_student("nope")


def test_live_student_is_under_a_hundredth_of_the_teacher():
    for arch in ("cin-resnet-xs", "cin-resnet-s", "cin-resnet-sc", "cin-unet-sc"):
        macs = count_macs(build_student(arch, 16, 12), 256, 256)
        assert macs * 100 <= TEACHER_GMACS_256 * 1e9, (arch, macs)


def test_norm_impl_hook_is_used():
    calls = []

    def spy(x, gamma, beta, act, residual, eps):
        calls.append(x.shape)
        from kernels.reference import norm_rows

        return norm_rows(x, gamma, beta, act, residual, eps)

    net = build_student("cin-resnet-xs", 8, 1)
    set_norm_impl(spy)
    try:
        net(torch.rand(1, 3, 16, 16), style_weights(0, 1))
    finally:
        set_norm_impl(None)
    assert len(calls) == 2 + 2 * REGISTRY["cin-resnet-xs"].blocks + 1


def _fit(arch: str, x: torch.Tensor, target: torch.Tensor, lr: float, steps: int) -> float:
    """Train a fresh one-style width-8 student on ``x → target``; return the last L1 loss."""
    torch.manual_seed(0)
    net = build_student(arch, 8, 1)
    opt = torch.optim.Adam(net.parameters(), lr)
    w = style_weights(0, 1, batch=x.shape[0])
    for _ in range(steps):
        loss = (net(x, w) - target).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return loss.item()


def test_colour_student_learns_a_global_grade():
    """The absolute-colour paths can express a colour grade that instance norm alone cannot."""
    torch.manual_seed(0)
    x = torch.rand(4, 3, 32, 32)
    target = (x * torch.tensor([1.1, 0.9, 0.6]).view(1, 3, 1, 1) + 0.05).clamp(0, 1)  # warm, faded
    assert _fit("cin-resnet-sc", x, target, 3e-2, 150) < 0.02


def test_context_student_learns_an_image_dependent_tone():
    """A tone change that depends on the whole picture (dark pictures brightened, bright ones darkened)."""
    torch.manual_seed(0)
    x = torch.rand(8, 3, 32, 32) * torch.linspace(0.3, 1.0, 8).view(8, 1, 1, 1)
    target = (x + 0.4 * (0.45 - x.mean((1, 2, 3), keepdim=True))).clamp(0, 1)
    loss = _fit("cin-unet-sc", x, target, 3e-3, 200)
    shift = (target - x).abs().mean().item()
    assert loss < 0.25 * shift, (loss, shift)


@pytest.mark.parametrize("arch", ["cin-resnet-sc", "cin-unet-sc"])
def test_colour_student_exports_to_onnx_and_matches(tmp_path, arch):
    import numpy as np
    import onnxruntime as ort

    from realtime.stylizer import export_onnx_bytes

    net = build_student(arch, 8, 2).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    x, w = torch.rand(1, 3, 48, 64), style_weights(1, 2)
    sess = ort.InferenceSession(export_onnx_bytes(net, 48, 64), providers=["CPUExecutionProvider"])
    y = sess.run(None, {"image": x.numpy(), "style_weights": w.numpy()})[0]
    assert np.abs(y - net(x, w).detach().numpy()).max() < 1e-4
