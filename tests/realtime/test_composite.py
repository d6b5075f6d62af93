import numpy as np
import pytest

from realtime.composite import Compositor, Treatment, cover_resize, masked_blur, smoothstep_alpha
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
