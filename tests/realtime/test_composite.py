import numpy as np
import pytest

from realtime.composite import (
    Compositor, Layer, Treatment, blur_scale, cover_resize, masked_blur, masked_blur_small, smoothstep_alpha,
)
from realtime.errors import InputError


@pytest.mark.parametrize("text,expected", [
    ("original", Treatment("original")),
    ("style", Treatment("style")),
    ("style:candy", Treatment("style", style="candy")),
    ("blur", Treatment("blur", blur=12.0)),
    ("blur:20", Treatment("blur", blur=20.0)),
    ("color:#ff8000", Treatment("color", color=(255, 128, 0))),
    ("colour:00ff00", Treatment("color", color=(0, 255, 0))),
])
def test_parse(text, expected):
    assert Treatment.parse(text) == expected
    assert Treatment.parse(str(expected)) == expected


@pytest.mark.parametrize("text", ["sparkle", "blur:abc", "blur:0", "color:red", "image:", "image:/no/such.png"])
def test_parse_errors_name_the_flag(text):
    with pytest.raises(InputError, match="--background"):
        Treatment.parse(text, "--background")


def test_smoothstep_alpha():
    mask = np.array([[0.0, 0.25, 0.4, 0.55, 1.0]], np.float32)
    a = smoothstep_alpha(mask, (5, 1), threshold=0.4, feather=0.15)
    assert a[0, 0] == 0 and a[0, 1] == 0 and a[0, 4] == 1 and a[0, 3] == pytest.approx(1)
    assert a[0, 2] == pytest.approx(0.5)
    hard = smoothstep_alpha(mask, (5, 1), threshold=0.4, feather=0.0)
    assert hard.tolist() == [[0, 0, 1, 1, 1]]


def test_masked_blur_keeps_person_colour_out_of_background():
    h, w = 120, 160
    frame = np.zeros((h, w, 3), np.uint8)
    frame[:] = (255, 0, 0)  # blue background (BGR)
    person = np.zeros((h, w), bool)
    person[:, 60:100] = True
    frame[person] = (0, 0, 255)  # red person
    mask = person.astype(np.float32)
    out = masked_blur(frame, 1.0 - mask, sigma=20)
    near = out[:, 50:58]  # background just next to the person
    assert near[..., 2].max() < 40, "person red bled into the background"
    assert near[..., 0].min() > 200


def test_blend_and_strength():
    c = Compositor()
    f = np.full((4, 4, 3), 100, np.uint8)
    p = np.full((4, 4, 3), 200, np.uint8)
    b = np.full((4, 4, 3), 0, np.uint8)
    alpha = np.full((4, 4), 0.25, np.float32)
    assert (c.blend(f, p, b, alpha, 1.0) == 50).all()
    assert (c.blend(f, p, b, None, 1.0) == 200).all()
    assert (c.blend(f, p, b, None, 0.0) == 100).all()
    assert (c.blend(f, p, b, None, 0.5) == 150).all()


def test_flat_treatments(tmp_path):
    import cv2

    c = Compositor()
    f = np.zeros((30, 40, 3), np.uint8)
    col = c.flat(Treatment("color", color=(255, 0, 0)), f)
    assert col[0, 0].tolist() == [0, 0, 255]  # BGR
    img = np.zeros((10, 100, 3), np.uint8)
    img[:, 45:55] = 255
    path = tmp_path / "bg.png"
    cv2.imwrite(str(path), img)
    out = c.flat(Treatment.parse(f"image:{path}"), f)
    assert out.shape == f.shape and out[:, 20].min() == 255  # scaled to cover, centre kept


def test_cover_resize_keeps_aspect():
    img = np.zeros((100, 400, 3), np.uint8)
    img[:, 195:205] = 255
    out = cover_resize(img, (64, 48))
    assert out.shape == (48, 64, 3)
    assert out[:, 32].min() > 0  # the centre stripe is still in the middle


def _reference_alpha(mask, size, threshold, feather):
    import torch

    from kernels.reference import feather_alpha, resize_bilinear

    m = resize_bilinear(torch.from_numpy(mask)[None], size[1], size[0])[0]
    return feather_alpha(m, threshold, feather).numpy()


@pytest.mark.parametrize("size", [(1, 1), (7, 5), (161, 97)])
def test_smoothstep_alpha_matches_the_kernel_reference(size):
    mask = np.random.default_rng(1).random((13, 17)).astype(np.float32)
    out, tmp = np.full((size[1], size[0]), 7, np.float32), np.empty((size[1], size[0]), np.float32)
    a = smoothstep_alpha(mask, size, 0.4, 0.15, out=out, tmp=tmp)
    assert a is out
    np.testing.assert_allclose(a, _reference_alpha(mask, size, 0.4, 0.15), atol=2e-5)
    hard = smoothstep_alpha(mask, size, 0.4, 0.0)
    np.testing.assert_array_equal(hard, _reference_alpha(mask, size, 0.4, 0.0))


@pytest.mark.parametrize("strength", [1.0, 0.6])
def test_composite_matches_the_kernel_reference(strength):
    import torch

    from kernels.reference import composite as ref_composite

    rng = np.random.default_rng(2)
    H, W = 61, 83
    frame = rng.integers(0, 256, (H, W, 3), np.uint8)
    mask = rng.random((9, 16)).astype(np.float32)
    delta = ((rng.random((15, 21, 3)) - 0.5) * 0.4).astype(np.float32)  # BGR change, 0..1 units
    image = rng.integers(0, 256, (11, 13, 3), np.uint8)  # sampled bilinearly like a small blur
    c = Compositor(0.4, 0.15)
    out = c.composite(frame, mask, Layer("delta", delta), Layer("image", image), strength)

    def rgb(a):  # (h, w, 3) BGR → [1, 3, h, w] RGB, as the reference takes treatments
        return torch.from_numpy(np.ascontiguousarray(a[:, :, ::-1].transpose(2, 0, 1)))[None].float()

    ref = ref_composite(torch.from_numpy(frame), torch.from_numpy(mask), rgb(np.rint(delta * 255) / 255),
                        rgb(image) / 255.0, "delta", "image", 0.4, 0.15, strength).numpy()
    diff = np.abs(out.astype(int) - ref.astype(int))
    assert diff.max() <= 2 and diff.mean() < 0.3, (diff.max(), diff.mean())


def test_composite_returns_a_new_frame_each_time():
    """Intermediates are reused between frames; the returned frame never is."""
    c = Compositor()
    rng = np.random.default_rng(3)
    frames = [rng.integers(0, 256, (40, 60, 3), np.uint8) for _ in range(2)]
    mask = rng.random((10, 15)).astype(np.float32)
    d = np.full((10, 15, 3), 0.1, np.float32)
    first = c.composite(frames[0], mask, Layer("delta", d), Layer("original"), 1.0)
    kept = first.copy()
    second = c.composite(frames[1], mask, Layer("delta", d), Layer("original"), 1.0)
    assert second is not first and np.array_equal(first, kept)
    only = c.composite(frames[0], None, Layer("original"), Layer("original"), 1.0)
    assert only is not frames[0] and np.array_equal(only, frames[0])
    half = c.composite(frames[0], None, Layer("image", np.zeros((1, 1, 3), np.uint8)), Layer("original"), 0.5)
    assert np.abs(half.astype(int) - frames[0] // 2).max() <= 1


def test_blur_scale_and_small_blur():
    assert blur_scale(640, 12) == 4 and blur_scale(1280, 12) == 8 and blur_scale(1280, 4) == 4
    frame = np.full((720, 1280, 3), 200, np.uint8)
    small = masked_blur_small(frame, np.ones((9, 16), np.float32), 12)
    assert small.shape == (90, 160, 3) and (small == 200).all()
    # all person: no background around, the blur is black there (the person covers it)
    assert (masked_blur_small(frame, np.zeros((9, 16), np.float32), 12) == 0).all()
