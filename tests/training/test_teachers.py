"""Teacher loaders: every format, built inside the test, against the original module's output."""

from __future__ import annotations


import numpy as np
import pytest
import torch
from torch import nn

from tests.training.conftest import ColourGrade, save_cyclegan
from training.cyclegan import ResnetGenerator
from training.teachers import TeacherError, load_teacher, parse_input_value


def _ref(g: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return ((g(x * 2 - 1) + 1) / 2).clamp(0, 1)


@pytest.mark.parametrize("affine,dropout,blocks", [(False, False, 2), (True, False, 6), (False, True, 3)])
def test_cyclegan_standard_layout_matches_module(tmp_path, affine, dropout, blocks):
    p = tmp_path / "g.pth"
    g = save_cyclegan(p, ngf=4, n_blocks=blocks, affine=affine, use_dropout=dropout)
    t = load_teacher(p)
    assert t.kind == "cyclegan"
    assert f"{blocks} blocks" in t.describe and ("with affine" in t.describe) == affine
    x = torch.rand(2, 3, 36, 52)
    assert torch.allclose(t(x), _ref(g, x), atol=1e-5)
    # sizes that are not multiples of 4 come back at their own size
    assert t(torch.rand(1, 3, 31, 45)).shape == (1, 3, 31, 45)


def test_cyclegan_variants_block_names_prefix_and_running_stats(tmp_path):
    g = ResnetGenerator(4, 2, affine=True).eval()
    sd = g.state_dict()
    # another block key name (as in several re-implementations), a DataParallel prefix and the
    # running-stat keys old PyTorch versions saved for InstanceNorm
    sd2 = {"module." + k.replace("conv_block", "block"): v for k, v in sd.items()}
    sd2["module.model.2.running_mean"] = torch.zeros(4)
    sd2["module.model.2.running_var"] = torch.ones(4)
    torch.save({"state_dict": sd2, "epoch": 3}, tmp_path / "v.pth")
    t = load_teacher(tmp_path / "v.pth")
    assert "dropped 2 running-stat keys" in t.describe
    x = torch.rand(1, 3, 32, 32)
    assert torch.allclose(t(x), _ref(g, x), atol=1e-5)


class _UpsampleGen(nn.Module):
    """ResnetGenerator with an upsample+conv decoder (resize-convolution)."""

    def __init__(self, ngf=4):
        super().__init__()
        base = ResnetGenerator(ngf, 2, affine=True)
        mods = list(base.model.children())[:12]  # up to and including the 2 blocks
        mods += [nn.Upsample(scale_factor=2), nn.ReflectionPad2d(1), nn.Conv2d(ngf * 4, ngf * 2, 3),
                 nn.InstanceNorm2d(ngf * 2, affine=True), nn.ReLU(),
                 nn.Upsample(scale_factor=2), nn.ReflectionPad2d(1), nn.Conv2d(ngf * 2, ngf, 3),
                 nn.InstanceNorm2d(ngf, affine=True), nn.ReLU(),
                 nn.ReflectionPad2d(3), nn.Conv2d(ngf, 3, 7), nn.Tanh()]
        self.model = nn.Sequential(*mods)

    def forward(self, x):
        return self.model(x)


def test_cyclegan_upsample_conv_decoder(tmp_path):
    torch.manual_seed(1)
    g = _UpsampleGen().eval()
    torch.save(g.state_dict(), tmp_path / "u.pth")
    t = load_teacher(tmp_path / "u.pth")
    assert "upsample+conv" in t.describe
    x = torch.rand(1, 3, 24, 40)
    assert torch.allclose(t(x), _ref(g, x), atol=1e-5)


def test_key_mismatch_names_keys(tmp_path):
    sd = ResnetGenerator(4, 2).state_dict()
    sd["model.10.conv_block.5.weight"] = torch.zeros(8, 16, 3, 3)  # a conv of another width
    torch.save(sd, tmp_path / "bad.pth")
    with pytest.raises(TeacherError, match=r"bad.pth.*model.10.conv_block.5.weight"):
        load_teacher(tmp_path / "bad.pth")
    sd = ResnetGenerator(4, 2).state_dict()
    del sd["model.11.conv_block.5.bias"]
    sd["model.11.conv_block.5.extra"] = torch.zeros(1)
    torch.save(sd, tmp_path / "bad2.pth")
    with pytest.raises(TeacherError, match=r"bad2.pth"):
        load_teacher(tmp_path / "bad2.pth")
    del sd["model.11.conv_block.5.extra"]
    torch.save(sd, tmp_path / "bad3.pth")
    with pytest.raises(TeacherError, match=r"missing keys \['model.11.conv_block.5.bias'\]"):
        load_teacher(tmp_path / "bad3.pth")
    torch.save({"encoder.weight": torch.zeros(3, 3)}, tmp_path / "other.pth")
    with pytest.raises(TeacherError, match=r"no 'model.N.\*' keys.*encoder.weight"):
        load_teacher(tmp_path / "other.pth")


def test_refuses_pickled_code_and_bad_files(tmp_path):
    p = tmp_path / "full_model.pth"
    torch.save(ColourGrade(), p)  # a whole pickled module: needs code to load
    with pytest.raises(TeacherError, match="refused to unpickle code"):
        load_teacher(p)
    (tmp_path / "trunc.pth").write_bytes(b"PK\x03\x04garbage")
    with pytest.raises(TeacherError, match="trunc.pth"):
        load_teacher(tmp_path / "trunc.pth")
    with pytest.raises(TeacherError, match="no such file"):
        load_teacher(tmp_path / "missing.pth")
    (tmp_path / "empty.onnx").write_bytes(b"")
    with pytest.raises(TeacherError, match="empty"):
        load_teacher(tmp_path / "empty.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"\x00\x01not onnx")
    with pytest.raises(TeacherError, match="not a loadable ONNX model"):
        load_teacher(tmp_path / "junk.onnx")
    with pytest.raises(TeacherError, match="unknown option"):
        load_teacher(tmp_path / "junk.onnx", colour="red")


def test_non_checkpoints_are_named_as_such_without_torch_warnings(tmp_path):
    import pickle
    import warnings

    rand = tmp_path / "random.pth"
    rand.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    plain = tmp_path / "plain.pth"
    plain.write_bytes(pickle.dumps({"weight": [1.0, 2.0]}, protocol=4))
    old = tmp_path / "old-format.pth"
    torch.save(ColourGrade().state_dict(), old, _use_new_zipfile_serialization=False, pickle_protocol=4)
    for path, needle in [(rand, "not a PyTorch checkpoint"), (plain, "plain Python pickle, not a PyTorch checkpoint"),
                         (old, "old-format torch.save file")]:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with pytest.raises(TeacherError) as e:
                load_teacher(path)
        msg = str(e.value)
        assert str(path) in msg and needle in msg and "unpickle code" not in msg, msg
        assert not caught, [str(w.message)[:80] for w in caught]


def test_torchscript(torchscript_teacher):
    t = load_teacher(torchscript_teacher)
    assert t.kind == "torchscript"
    x = torch.rand(1, 3, 40, 30)
    assert torch.allclose(t(x), ColourGrade()(x), atol=1e-6)


class _StyledNet(nn.Module):
    """Tiny ONNX-exportable image model with a style-weight input, like multi-style transfer nets."""

    def __init__(self, nhwc=False, signed=False):
        super().__init__()
        self.nhwc, self.signed = nhwc, signed
        self.bank = nn.Parameter(torch.rand(4, 3) * 0.5)

    def forward(self, image, style_weights):
        x = image.permute(0, 3, 1, 2) if self.nhwc else image
        if self.signed:
            x = (x + 1) / 2
        y = x * (1 - 0.5 * (style_weights @ self.bank))[None, :, None, None]
        if self.signed:
            y = y * 2 - 1
        return y.permute(0, 2, 3, 1) if self.nhwc else y


def _export(m, path, shape, dynamic=True):
    x = torch.rand(*shape)
    axes = {"image": {0: "n", 2: "h", 3: "w"} if shape[1] == 3 else {0: "n", 1: "h", 2: "w"}} if dynamic else None
    torch.onnx.export(m, (x, torch.ones(4) / 4), str(path), input_names=["image", "style_weights"],
                      output_names=["out"], dynamic_axes=axes, opset_version=17, dynamo=False)


def _expected(m, x, w):
    bank = m.bank.detach()
    return x * (1 - 0.5 * (torch.as_tensor(w) @ bank))[None, :, None, None]


def test_onnx_nchw_with_style_weights(tmp_path):
    m = _StyledNet()
    _export(m, tmp_path / "s.onnx", (1, 3, 32, 32))
    with pytest.raises(TeacherError, match="style_weights.*--teacher-input"):
        load_teacher(tmp_path / "s.onnx")
    t = load_teacher(tmp_path / "s.onnx", inputs={"style_weights": "onehot:2"})
    assert t.kind == "onnx" and t.options["range"] == [0.0, 1.0]
    x = torch.rand(1, 3, 30, 42)
    w = np.array([0, 0, 1, 0], np.float32)
    assert torch.allclose(t(x), _expected(m, x, w), atol=1e-5)
    with pytest.raises(TeacherError, match="indices must be 0..3"):
        load_teacher(tmp_path / "s.onnx", inputs={"style_weights": "onehot:9"})


def test_onnx_nhwc_signed_range_detected(tmp_path):
    m = _StyledNet(nhwc=True, signed=True)
    _export(m, tmp_path / "h.onnx", (1, 32, 32, 3))
    t = load_teacher(tmp_path / "h.onnx", inputs={"style_weights": "0.25"})
    assert t.options["layout"] == "nhwc" and t.options["range"] == [-1.0, 1.0]
    x = torch.rand(2, 3, 20, 28)
    assert torch.allclose(t(x), _expected(m, x, np.full(4, 0.25, np.float32)), atol=1e-5)


@pytest.mark.parametrize("mode", ["resize", "tile"])
def test_onnx_fixed_size(tmp_path, mode):
    m = _StyledNet()
    _export(m, tmp_path / "f.onnx", (1, 3, 16, 16), dynamic=False)
    t = load_teacher(tmp_path / "f.onnx", inputs={"style_weights": "1,0,0,0"}, fixed=mode, range="0,1")
    # smooth content: resizing to the model's 16×16 and back keeps it
    x = torch.nn.functional.interpolate(torch.rand(1, 3, 4, 5), size=(40, 56), mode="bilinear", align_corners=True)
    y = t(x)
    assert y.shape == x.shape
    exp = _expected(m, x, np.array([1, 0, 0, 0], np.float32))
    # a per-pixel model: tiling is exact, resizing only approximately so (blurs edges)
    if mode == "tile":
        assert float((y - exp).abs().max()) < 1e-5
    else:
        assert float((y - exp).abs().mean()) < 0.03


def test_parse_input_value():
    assert parse_input_value("w", "mix:1=1;3=3", [4]).tolist() == [0, 0.25, 0, 0.75]
    with pytest.raises(TeacherError, match="got 3 values"):
        parse_input_value("w", "1,2,3", [4])


def test_bench_contract_single_vga_frame(cyclegan_teacher):
    t = load_teacher(cyclegan_teacher[0])
    y = t(torch.rand(1, 3, 480, 640))
    assert y.shape == (1, 3, 480, 640) and float(y.min()) >= 0 and float(y.max()) <= 1
