"""Image-adaptive 3D LUT students: the applies against a reference, packs, and the live pipeline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from realtime.composite import Treatment
from realtime.lut import (LUT_REGISTRY, LutNet, LutTable, apply_lut, apply_lut_reference, identity_lut,
                          lut_monotonicity, lut_smoothness)
from realtime.lut_live import LutRunner
from realtime.pipeline import Pipeline, PipelineConfig
from realtime.styles import StyleRegistry, load_pack, save_pack
from tests.helpers import make_pack, synthetic_frame


def smooth_lut(d: int, seed: int = 0) -> np.ndarray:
    """A smooth, non-separable, monotone-ish look: a colour matrix, a gamma and a cross-channel term."""
    ident = identity_lut(d).numpy().astype(np.float64)
    r, g, b = ident
    m = np.array([[0.9, 0.15, -0.05], [0.05, 0.85, 0.1], [0.0, 0.2, 0.7]])
    out = np.clip(np.einsum("ij,jxyz->ixyz", m, ident), 0, 1) ** 1.15 + 0.04 * np.sin(3 * r + seed) * g * b
    return np.clip(out, 0, 1).astype(np.float32)


def make_lut_pack(path: Path, styles=("warm",), arch: str = "lut3d-17", seed: int = 0, name: str | None = None,
                  mix: str = "linear"):
    """A LUT pack with random (visible, not identity) basis LUTs and weight heads."""
    g = torch.Generator().manual_seed(seed)
    net = LutNet(arch, 8, len(styles), mix)
    with torch.no_grad():
        for i in range(len(styles)):
            net.basis[i, 0] = torch.from_numpy(smooth_lut(net.dim, seed + i)) - net.ident
        net.basis[:, 1:].normal_(0, 0.03, generator=g)
        net.head_w.normal_(0, 0.05, generator=g)
    meta = {"name": name or path.name, "description": "random LUTs for tests", "license": "CC0-1.0",
            "styles": [{"id": s, "name": s.title(), "metrics": {"fidelity_gain": 0.8},
                        "learned": {"style_photos": ["x/"], "style_photo_count": 12}} for s in styles]}
    return save_pack(path, net, meta)


@pytest.mark.parametrize("d", [2, 5, 17])
def test_apply_lut_matches_reference_including_cube_edges(d):
    rng = np.random.default_rng(d)
    lut = rng.random((3, d, d, d)).astype(np.float32)  # not smooth: any indexing slip shows
    edge = np.array([0.0, 1.0, 1 - 1e-7, 1e-7, 0.5, 1 / (d - 1), (d - 2) / (d - 1)])
    pts = np.stack(np.meshgrid(edge, edge, edge, indexing="ij"), -1).reshape(-1, 3)
    pts = np.concatenate([pts, rng.random((500, 3)), [[1.2, -0.3, 0.5]]])  # outside [0, 1]: clamped
    ref = apply_lut_reference(lut, pts)
    x = torch.from_numpy(pts.T.astype(np.float32)).reshape(1, 3, 1, -1)
    got = apply_lut(torch.from_numpy(lut), x)[0, :, 0].T.numpy()
    np.testing.assert_allclose(got, ref, atol=2e-6)
    # lattice points map exactly to the table's entries
    assert np.allclose(apply_lut(torch.from_numpy(lut), torch.ones(1, 3, 1, 1))[0, :, 0, 0].numpy(),
                       lut[:, -1, -1, -1])


def test_apply_lut_is_differentiable_in_lut_and_input():
    lut = identity_lut(5).unsqueeze(0).requires_grad_()
    x = torch.rand(1, 3, 4, 4, requires_grad=True)
    apply_lut(lut, x).sum().backward()
    assert lut.grad.abs().sum() > 0 and x.grad.abs().sum() > 0
    assert torch.allclose(x.grad, torch.ones_like(x.grad), atol=1e-5)  # identity: d out / d in = 1


@pytest.mark.parametrize("d", [17, 33])
def test_lut_table_on_uint8_frames_against_reference(d):
    frame = synthetic_frame(97, 131, seed=d)
    frame[0, :8] = [[0, 0, 0], [255, 255, 255], [255, 0, 0], [0, 255, 0], [0, 0, 255], [3, 252, 128],
                    [254, 1, 2], [128, 128, 128]]
    ident = identity_lut(d).numpy()
    assert (LutTable(ident).apply(frame) == frame).all()  # an identity LUT is exact
    lut = smooth_lut(d)
    got = LutTable(lut).apply(frame).astype(np.float64)
    ref = np.clip(apply_lut_reference(lut, frame[..., ::-1] / 255.0)[..., ::-1] * 255.0, 0, 255)
    err = np.abs(got - ref)
    # The table stores the change at the centre of 4-level cells: error <= 2 levels x |slope - 1| + rounding.
    assert err.max() <= 2.5 and err.mean() < 0.6, (err.max(), err.mean())


def test_lut_net_mixes_styles_as_luts_and_regularisers():
    net = LutNet("lut3d-17", 8, 2)
    with torch.no_grad():
        net.basis.normal_(0, 0.05)
    x = torch.rand(2, 3, 24, 32)
    a, b = torch.tensor([[1.0, 0.0]] * 2), torch.tensor([[0.0, 1.0]] * 2)
    mid = torch.tensor([[0.3, 0.7]] * 2)
    ya, yb, ym = net(x, a), net(x, b), net(x, mid)
    assert torch.allclose(ym, 0.3 * ya + 0.7 * yb, atol=1e-5)  # a mix of styles is a mix of outputs
    assert float(lut_smoothness(net).detach()) > 0
    assert float(lut_monotonicity(identity_lut(9)[None])) == 0
    flipped = identity_lut(9).flip(1)[None]  # red decreasing along r
    assert float(lut_monotonicity(flipped)) > 0
    assert set(LUT_REGISTRY) == {"lut3d-17", "lut3d-33"}


def test_lut_pack_round_trips_through_registry_and_cli(tmp_path, capsys):
    from ui.cli import main

    make_lut_pack(tmp_path / "learned", styles=("warm", "cool"), seed=1)
    pack = load_pack(tmp_path / "learned")
    assert pack.kind == "lut" and pack.architecture["arch"] == "lut3d-17"
    net = pack.build()
    assert isinstance(net, LutNet) and not net.training
    reg = StyleRegistry([tmp_path], include_user=False, include_shipped=False)
    assert [s.key for s in reg.styles] == ["learned/warm", "learned/cool"]
    assert main(["styles", "--styles", str(tmp_path), "--json"]) == 0
    assert '"learned"' in capsys.readouterr().out


def _cfg(root, **kw):
    kw.setdefault("cpu_engine", "eager")
    kw.setdefault("segmentation", False)
    return PipelineConfig(styles_dirs=[str(root)], include_user_styles=False, include_shipped_styles=False, **kw)


def test_pipeline_applies_the_predicted_lut_at_full_resolution(tmp_path):
    make_lut_pack(tmp_path / "learned", seed=2)
    frame = synthetic_frame(120, 160)
    with Pipeline(_cfg(tmp_path)) as p:
        out, st = p.process(frame)
    net = load_pack(tmp_path / "learned").build()
    x = torch.from_numpy(frame[..., ::-1].copy()).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        ref = net(x, torch.ones(1, 1))[0].permute(1, 2, 0).numpy()[..., ::-1] * 255
    err = np.abs(out.astype(np.float64) - ref)
    assert out.shape == frame.shape and np.abs(out.astype(int) - frame).mean() > 3
    # INTER_AREA thumbnail vs torch area pooling and the 64³ table: close, not bit-equal
    assert err.mean() < 1.0 and err.max() <= 4, (err.mean(), err.max())


def test_lut_runner_refreshes_and_blends_over_time(tmp_path):
    make_lut_pack(tmp_path / "learned", seed=3)
    runner = LutRunner(load_pack(tmp_path / "learned"), refresh=2, blend=0.5)
    f = synthetic_frame(60, 80)
    w0 = runner.weights(f).clone()
    g = np.clip(f.astype(int) + 20, 0, 255).astype(np.uint8)  # a small change: no scene cut
    w1 = runner.weights(g)  # frame 1: not due, unchanged
    assert torch.equal(w0, w1)
    w2 = runner.weights(g)  # frame 2: halfway to the new prediction
    with torch.inference_mode():
        target = runner.net.weights(runner._thumb, torch.ones(1, 1))
    assert torch.allclose(w2, w0 + 0.5 * (target - w0), atol=1e-6)
    # the host path runs the same network in numpy, with the same schedule
    runner = LutRunner(load_pack(tmp_path / "learned"), refresh=2, blend=0.5)
    h0 = runner.host_weights(f).copy()
    np.testing.assert_allclose(h0, w0[0].numpy(), atol=1e-5)
    assert np.array_equal(runner.host_weights(g), h0)
    np.testing.assert_allclose(runner.host_weights(g), w2[0].numpy(), atol=1e-5)


@pytest.mark.parametrize("mix", ["linear", "convex"])
def test_numpy_weights_and_lut_match_the_network(mix):
    from realtime.lut_live import NumpyWeights

    net = LutNet("lut3d-17", 8, 2, mix)
    with torch.no_grad():
        net.basis.normal_(0, 0.05)
        net.head_w.normal_(0, 0.1)
    thumb = torch.rand(1, 3, 32, 32)
    npw = NumpyWeights(net)
    with torch.no_grad():
        wk = net.weights(thumb, torch.ones(1, 2) / 2)
        lut = net.lut_from_weights(wk, torch.tensor([[0.25, 0.75]]))
    got = npw.weights(thumb[0].numpy())
    np.testing.assert_allclose(got, wk[0].numpy(), atol=1e-5)
    np.testing.assert_allclose(npw.lut(got, np.array([0.25, 0.75], np.float32)), lut[0].numpy(), atol=1e-5)
    if mix == "convex":  # every frame's LUT is a blend of the learned ones
        np.testing.assert_allclose(got.sum(-1), 1.0, atol=1e-6)
        assert (got > 0).all()


def test_convex_mix_round_trips_and_a_bad_mix_is_a_pack_error(tmp_path):
    import json

    from realtime.styles import PackError

    make_lut_pack(tmp_path / "convex", mix="convex")
    pack = load_pack(tmp_path / "convex")
    assert pack.architecture["mix"] == "convex" and pack.build().mix == "convex"
    meta = json.loads((tmp_path / "convex" / "pack.json").read_text())
    meta["architecture"]["mix"] = "wild"
    (tmp_path / "convex" / "pack.json").write_text(json.dumps(meta))
    with pytest.raises(PackError, match="mix"):
        load_pack(tmp_path / "convex")


def test_lut_and_cin_packs_crossfade_regions_and_device_path(tmp_path):
    make_lut_pack(tmp_path / "learned", seed=4)
    make_pack(tmp_path / "paint", styles=("p",), seed=5)
    frame = synthetic_frame(120, 160)
    now = [0.0]
    with Pipeline(_cfg(tmp_path, style="learned/warm", crossfade_ms=300)) as p:
        p.stylizer.clock = lambda: now[0]
        lut_out, _ = p.process(frame)
        p.set_style("paint/p")
        now[0] = 0.15
        mid, _ = p.process(frame)
        now[0] = 1.0
        cin_out, _ = p.process(frame)
        assert np.abs(mid.astype(int) - lut_out).mean() > 1 and np.abs(mid.astype(int) - cin_out).mean() > 1
        p.set_style_mix({"learned/warm": 1, "paint/p": 1}, crossfade=False)
        both, _ = p.process(frame)
        assert both.shape == frame.shape
    outs = []
    for device_path in (False, True):
        with Pipeline(_cfg(tmp_path, style="learned/warm", device_path=device_path)) as p:
            outs.append(p.process(frame)[0].astype(int))
    assert np.abs(outs[0] - outs[1]).mean() < 1.5
    with Pipeline(_cfg(tmp_path, style="learned/warm", person=Treatment("style"),
                       background=Treatment("color", color=(0, 0, 0)), segmentation=True)) as p:
        out, st = p.process(synthetic_frame(120, 160))
        assert st.segmented and out.shape == frame.shape


def test_device_path_runs_the_lut_kernel_where_cupy_serves(tmp_path, monkeypatch):
    """Where the CuPy kernels serve the frame, the change is composite.cu's lut_delta (run here through the
    g++ emulation on CPU tensors) and equals the grid_sample path; the float input is made only to predict."""
    from kernels import cupy_ops, dispatch
    from kernels.emu import EmuRunner
    from realtime import lut_live
    from realtime.stylizer import Stylizer

    make_lut_pack(tmp_path / "learned", styles=("warm", "cool"), seed=6)
    registry = StyleRegistry([str(tmp_path)], include_user=False, include_shipped=False)
    pack = registry.packs["learned"]
    frame = torch.from_numpy(synthetic_frame(24, 40))
    rows = [(0, 0.3), (1, 0.4)]  # Σ weights 0.7: the change is scaled by the pack's share of the mix
    plain = Stylizer(registry, backend="cpu", cpu_engine="eager")
    want = [lut_live.delta_on_device(plain, pack, rows, frame, torch.float32) for _ in range(3)]

    emu = EmuRunner.build()
    launched = []

    def record(launch):
        launched.append(launch.kernel)
        emu(launch)

    record.name, record.check_device = "emulated", emu.check_device
    monkeypatch.setattr(dispatch, "uses_cupy", lambda t: isinstance(t, torch.Tensor))
    monkeypatch.setattr(cupy_ops, "runner", lambda: record)
    fused = Stylizer(registry, backend="cpu", cpu_engine="eager")
    for i in range(3):  # refresh every 2nd frame: frames 0 and 2 predict, frame 1 reuses the weights
        launched.clear()
        got = lut_live.delta_on_device(fused, pack, rows, frame, torch.float32)
        assert launched == (["prepare", "lut_delta"] if i != 1 else ["lut_delta"])
        assert got.shape == (1, 3, 24, 40) and got.abs().max() > 0.02
        assert torch.allclose(got, want[i], atol=1e-5), float((got - want[i]).abs().max())
