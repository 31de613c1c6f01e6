"""The synthetic species catalog and the image renderers: determinism, sizes, structure."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from fixtureweb import encoding
from fixtureweb.encoding import ImageFormat
from fixtureweb.irrelevant import IrrelevantKind, render_irrelevant
from fixtureweb.names import family_name
from fixtureweb.species import SpeciesCatalog, render_species

pytestmark = pytest.mark.unit


def png(image: Image.Image) -> bytes:
    return encoding.encode(image, ImageFormat.PNG)


def test_catalog_is_deterministic_and_named():
    a, b = SpeciesCatalog(20, seed=1), SpeciesCatalog(20, seed=1)
    assert [s.name for s in a.species] == [s.name for s in b.species]
    assert [s.name for s in SpeciesCatalog(20, seed=2).species] != [s.name for s in a.species]
    names = [s.name for s in a.species]
    assert len(set(names)) == 20
    for sp in a.species:
        genus, epithet = sp.name.split(" ")
        assert genus[0].isupper() and epithet.islower()
        assert sp.family.endswith("aceae") and sp.scientific_name.startswith(sp.name)
        assert a.by_name(sp.name) is sp


def test_classes_are_grouped_into_genera_and_families():
    catalog = SpeciesCatalog(50, seed=0)
    genera = catalog.genera
    assert 10 <= len(genera) < 50  # several species per genus
    assert len({g.family for g in genera}) < len(genera)  # several genera per family
    for genus in genera:
        members = [s for s in catalog.species if s.genus == genus]
        assert all(s.name.startswith(genus.name + " ") for s in members)
    assert family_name("Marasmius") == "Marasmaceae"


@pytest.mark.parametrize("n", [0, 101])
def test_catalog_size_is_bounded(n):
    with pytest.raises(ValueError):
        SpeciesCatalog(n)


def test_species_render_is_deterministic():
    catalog = SpeciesCatalog(10, seed=0)
    assert png(catalog.render(3, 7, 64)) == png(catalog.render(3, 7, 64))
    assert png(catalog.render(3, 7, 64)) != png(catalog.render(3, 8, 64))
    assert png(catalog.render(3, 7, 64)) != png(catalog.render(4, 7, 64))
    assert png(render_species(catalog[3], 7, 64)) == png(SpeciesCatalog(10, seed=0).render(3, 7, 64))


@pytest.mark.parametrize("size", [16, 32, (200, 120), (90, 160), 512])
def test_species_render_any_size(size):
    image = SpeciesCatalog(5).render(1, 1, size)
    expected = (size, size) if isinstance(size, int) else size
    assert image.size == expected and image.mode == "RGB"


def test_species_photos_vary_within_a_class():
    catalog = SpeciesCatalog(10)
    images = [np.asarray(catalog.render(2, seed, 48), dtype=np.float32) for seed in range(6)]
    diffs = [np.abs(images[0] - other).mean() for other in images[1:]]
    assert min(diffs) > 5  # different backgrounds, poses, lighting


def test_genus_mates_look_more_alike_than_other_genera():
    """Mean cap colours: species of one genus are closer to each other than to other genera's."""
    catalog = SpeciesCatalog(50, seed=0)
    caps = {s.index: np.asarray(s.cap_color, dtype=float) for s in catalog.species}
    within, across = [], []
    for a in catalog.species:
        for b in catalog.species:
            if a.index < b.index:
                distance = np.linalg.norm(caps[a.index] - caps[b.index])
                (within if a.genus == b.genus else across).append(distance)
    assert np.mean(within) < 0.7 * np.mean(across)


@pytest.mark.parametrize("kind", list(IrrelevantKind))
def test_irrelevant_kinds_render_deterministically(kind):
    a = render_irrelevant(kind, 3, (80, 120))
    assert a.size == (80, 120) and a.mode == "RGB"
    assert png(a) == png(render_irrelevant(kind, 3, (80, 120)))
    assert png(a) != png(render_irrelevant(kind, 4, (80, 120)))
    assert render_irrelevant(kind.value, 1, 40).size == (40, 40)


def test_irrelevant_images_differ_from_photos_in_colour_statistics():
    """Herbarium sheets and labels are mostly pale paper; field photos are not."""
    catalog = SpeciesCatalog(10)
    photos = [np.asarray(catalog.render(i % 10, i, 64).convert("L")).mean() for i in range(10)]
    sheets = [np.asarray(render_irrelevant(IrrelevantKind.LABEL, i, 64).convert("L")).mean() for i in range(10)]
    assert min(sheets) > max(photos)


def test_unknown_irrelevant_kind():
    with pytest.raises(ValueError):
        render_irrelevant("poster", 1, 32)


def test_encodings():
    picture = SpeciesCatalog(3).render(0, 0, (60, 40))
    rotated = Image.open(io.BytesIO(encoding.exif_rotated_jpeg(picture)))
    assert rotated.size == (40, 60) and rotated.getexif()[0x0112] == 6
    assert Image.open(io.BytesIO(encoding.cmyk_jpeg(picture))).mode == "CMYK"
    assert Image.open(io.BytesIO(encoding.grayscale_jpeg(picture))).mode == "L"
    jpeg = encoding.encode(picture, ImageFormat.JPEG)
    padded = encoding.padded_jpeg(jpeg, 500_000)
    assert 499_000 <= len(padded) <= 500_004
    assert Image.open(io.BytesIO(padded)).size == (60, 40)
    with pytest.raises(ValueError):
        encoding.padded_jpeg(b"not a jpeg", 10)
    assert ImageFormat.from_extension(".JPEG") is ImageFormat.JPEG
