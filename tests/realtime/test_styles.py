import json

import pytest

from realtime.styles import PackError, StyleRegistry, load_pack
from tests.helpers import make_pack


def test_roundtrip(tmp_path):
    make_pack(tmp_path / "p", styles=("a", "b"))
    pack = load_pack(tmp_path / "p")
    assert [s.id for s in pack.styles] == ["a", "b"]
    assert pack.resolution == (160, 120)
    net = pack.build()
    assert net.num_styles == 2


@pytest.mark.parametrize("damage,needle", [
    (lambda d: (d / "pack.json").write_text("{nope"), "not valid JSON"),
    (lambda d: (d / "model.safetensors").write_bytes(b"garbage"), "cannot be read"),
    (lambda d: (d / "model.safetensors").unlink(), "model.safetensors is missing"),
    (lambda d: _edit(d, schema_version=99), "schema_version 99"),
    (lambda d: _edit(d, architecture={"arch": "cin-resnet-m", "width": 8, "num_styles": 2}), "do not match"),
    (lambda d: _edit(d, architecture={"arch": "cin-resnet-xs", "width": 16, "num_styles": 2}), "has shape"),
    (lambda d: _edit(d, styles=[{"id": "a"}]), "lists 1 styles"),
    (lambda d: _edit(d, order="first"), "'order' must be an integer"),
    (lambda d: _poison(d, float("nan")), "model.safetensors holds NaN or Inf"),
    (lambda d: _poison(d, float("-inf")), "model.safetensors holds NaN or Inf"),
])
def test_corrupt_packs_name_the_pack_and_problem(tmp_path, damage, needle):
    d = make_pack(tmp_path / "broken")
    damage(d)
    with pytest.raises(PackError) as e:
        load_pack(d)
    assert str(d) in str(e.value) and needle in str(e.value)


def _edit(d, **kv):
    meta = json.loads((d / "pack.json").read_text())
    meta.update(kv)
    (d / "pack.json").write_text(json.dumps(meta))


def _poison(d, value):
    """One weight element set to ``value`` (NaN or Inf), as a diverged training run would leave it."""
    from safetensors.torch import load_file, save_file

    state = load_file(str(d / "model.safetensors"))
    key = sorted(k for k, v in state.items() if v.is_floating_point())[-1]
    state[key].view(-1)[0] = value
    save_file(state, str(d / "model.safetensors"))


def test_registry_order_hotkeys_and_lookup(tmp_path):
    make_pack(tmp_path / "packs" / "one", styles=("a", "b"))
    make_pack(tmp_path / "packs" / "two", styles=("c",))
    reg = StyleRegistry([tmp_path / "packs"], include_user=False, include_shipped=False)
    assert [s.key for s in reg.styles] == ["one/a", "one/b", "two/c"]
    assert [s.hotkey for s in reg.styles] == ["1", "2", "3"]
    assert reg.find("C").key == "two/c"
    assert reg.find("one/b").id == "b"
    with pytest.raises(PackError, match="no such style"):
        reg.find("zzz")


def test_registry_puts_packs_in_their_order_then_by_folder(tmp_path):
    make_pack(tmp_path / "packs" / "alpha", styles=("a",))
    make_pack(tmp_path / "packs" / "beta", styles=("b",))
    make_pack(tmp_path / "packs" / "zulu", styles=("z",))
    _edit(tmp_path / "packs" / "alpha", order=2)
    _edit(tmp_path / "packs" / "zulu", order=1)  # beta has none: 0
    reg = StyleRegistry([tmp_path / "packs"], include_user=False, include_shipped=False)
    assert [s.key for s in reg.styles] == ["beta/b", "zulu/z", "alpha/a"]
    assert [s.hotkey for s in reg.styles] == ["1", "2", "3"]


def test_registry_user_dir_and_shadowing(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    make_pack(tmp_path / "data" / "stylecam" / "styles" / "mine", styles=("u",))
    make_pack(tmp_path / "extra" / "mine", styles=("x",))
    reg = StyleRegistry([tmp_path / "extra"], include_shipped=False)
    assert [s.key for s in reg.styles] == ["mine/x"]  # --styles shadows the user's pack of that name


def test_registry_errors(tmp_path):
    with pytest.raises(PackError, match="no such directory"):
        StyleRegistry([tmp_path / "missing"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(PackError, match="no style pack here"):
        StyleRegistry([tmp_path / "empty"])
    d = make_pack(tmp_path / "bad")
    (d / "pack.json").write_text("[]")
    with pytest.raises(PackError, match="JSON object"):
        StyleRegistry([d])
