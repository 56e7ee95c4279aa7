"""Nomenclatures: CORINE -> BigEarthNet-19, CDL's 14 crops, NLCD's 15 classes, custom files, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from spectralearth.pipelines.nomenclatures import IGNORE, Nomenclature, load_nomenclature

# CORINE's 44 level-3 codes; BigEarthNet's 43 are these without 335 (glaciers).
CLC = [111, 112, 121, 122, 123, 124, 131, 132, 133, 141, 142, 211, 212, 213, 221, 222, 223, 231, 241, 242, 243, 244,
       311, 312, 313, 321, 322, 323, 324, 331, 332, 333, 334, 335, 411, 412, 421, 422, 423, 511, 512, 521, 522, 523]
CLC_IGNORED = {122, 123, 124, 131, 132, 133, 141, 142, 332, 334, 335, 423}


def test_corine19_maps_the_43_codes_onto_19_classes():
    nom = load_nomenclature("corine19")
    assert nom.n_classes == 19
    m = nom.mapping()
    assert set(m) == set(CLC) - CLC_IGNORED and len(m) == 32
    expect = {111: "Urban fabric", 112: "Urban fabric", 121: "Industrial or commercial units", 213: "Arable land",
              241: "Permanent crops", 231: "Pastures", 242: "Complex cultivation patterns", 244: "Agro-forestry areas",
              311: "Broad-leaved forest", 312: "Coniferous forest", 313: "Mixed forest",
              333: "Natural grassland and sparsely vegetated areas", 323: "Moors, heathland and sclerophyllous vegetation",
              324: "Transitional woodland, shrub", 331: "Beaches, dunes, sands", 412: "Inland wetlands",
              422: "Coastal wetlands", 512: "Inland waters", 521: "Marine waters", 523: "Marine waters"}
    for code, name in expect.items():
        assert nom.classes[m[code]] == name, code
    codes = np.array(CLC + [0, 48, -128, 999])
    out = nom.apply(codes)
    assert out.dtype == np.uint8
    for c, v in zip(codes.tolist(), out.tolist(), strict=True):
        assert (v == IGNORE) == (c not in m), c
        if c in m:
            assert v == m[c]


def test_corine_grid_codes_follow_clc_order():
    by_code, by_grid = load_nomenclature("corine19"), load_nomenclature("corine19-grid")
    assert by_code.classes == by_grid.classes
    grid = np.arange(1, 45)
    np.testing.assert_array_equal(by_grid.apply(grid), by_code.apply(np.array(CLC)))
    assert by_grid.apply(np.array([48, 128, 0])).tolist() == [IGNORE] * 3


@pytest.mark.parametrize("name,codes", [
    ("cdl", [1, 2, 3, 4, 5, 6, 45, 54, 69, 72, 75, 76, 204, 210]),
    ("nlcd", [11, 21, 22, 23, 24, 31, 41, 42, 43, 52, 71, 81, 82, 90, 95]),
])
def test_cdl_and_nlcd_keep_their_classes_in_order_and_ignore_the_rest(name, codes):
    nom = load_nomenclature(name)
    assert nom.n_classes == len(codes)
    assert nom.apply(np.array(codes)).tolist() == list(range(len(codes)))
    others = np.array([c for c in range(256) if c not in codes])
    assert np.all(nom.apply(others) == IGNORE)
    valid = np.ones(len(codes), bool)
    valid[0] = False
    assert nom.apply(np.array(codes), valid)[0] == IGNORE


def test_nomenclature_from_file_and_bad_input(tmp_path):
    path = tmp_path / "mine.json"
    path.write_text(json.dumps({"name": "mine", "classes": [{"name": "forest", "codes": [7, 8]}, {"name": "water", "codes": [3]}]}))
    nom = load_nomenclature(str(path))
    assert nom.apply(np.array([[7, 3], [8, 9]])).tolist() == [[0, 1], [0, IGNORE]]
    with pytest.raises(ValueError, match="unknown nomenclature 'corine'"):
        load_nomenclature("corine")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"classes": [{"name": "a", "codes": [1]}, {"name": "b", "codes": [1]}]}))
    with pytest.raises(ValueError, match="code 1 maps to both 'a' and 'b'"):
        load_nomenclature(str(bad))
    bad.write_text(json.dumps({"classes": [{"label": "a"}]}))
    with pytest.raises(ValueError, match="bad.json"):
        load_nomenclature(str(bad))
    with pytest.raises(ValueError, match="at most 254"):
        Nomenclature("big", tuple(map(str, range(255))), tuple((i,) for i in range(255)))
