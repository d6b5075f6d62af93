"""A look learned from photos appears in the gallery like any other, its tooltip saying where it came from."""

from realtime.styles import StyleRegistry
from tests.realtime.test_lut import make_lut_pack
from ui.gallery import StyleGallery, style_tooltip


def test_learned_pack_in_gallery_with_its_origin_and_metrics(qapp, tmp_path):
    make_lut_pack(tmp_path / "learned", styles=("film",), seed=1)
    reg = StyleRegistry([tmp_path], include_user=False, include_shipped=False)
    style = reg.styles[0]
    style.metrics["known_answer"] = {"look": "vintage", "learned_unpaired": 0.61, "baselines": {"mean_std": 0.2}}
    tip = style_tooltip(style)
    assert "Learned from 12 photos in x" in tip
    assert "learned unpaired 0.61" in tip and "baselines mean std 0.2" in tip
    assert "Fidelity" in tip or "fidelity" in tip
    gallery = StyleGallery(reg.styles)
    assert gallery.count() == 1 and "Learned from" in gallery.item(0).toolTip()
