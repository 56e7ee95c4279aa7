"""A coarse world land mask (hand-drawn continent outlines, ~200 km accuracy).

Good enough to put synthetic acquisitions over land; not a coastline.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import shapely
from shapely.geometry import Polygon

__all__ = ["LAT_RANGE", "is_land", "sample_land"]

#: Latitudes the archive covers (EnMAP land acquisitions).
LAT_RANGE = (-56.0, 72.0)

_OUTLINES: dict[str, list[tuple[float, float]]] = {
    "north_america": [
        (-168, 66), (-162, 70), (-140, 70), (-125, 70), (-95, 72), (-80, 70), (-65, 60), (-56, 52),
        (-65, 45), (-70, 42), (-76, 35), (-81, 31), (-80, 25), (-83, 29), (-90, 30), (-97, 27),
        (-97, 22), (-92, 18), (-87, 21), (-83, 15), (-78, 8), (-80, 7), (-86, 12), (-92, 14),
        (-105, 20), (-110, 24), (-115, 30), (-118, 34), (-124, 40), (-124, 48), (-133, 55),
        (-150, 60), (-165, 60),
    ],
    "south_america": [
        (-80, 9), (-72, 12), (-62, 10), (-52, 5), (-35, -5), (-39, -15), (-48, -26), (-58, -34),
        (-62, -40), (-66, -47), (-69, -52), (-73, -53), (-75, -46), (-73, -37), (-71, -30),
        (-70, -18), (-76, -14), (-81, -5), (-80, 0), (-77, 4),
    ],
    "europe": [
        (-10, 36), (-9, 43), (-2, 44), (-5, 48), (2, 51), (8, 54), (10, 58), (5, 59), (5, 62),
        (15, 69), (25, 71), (30, 70), (40, 67), (45, 68), (60, 70), (60, 45), (50, 45), (47, 42),
        (40, 41), (36, 41), (28, 41), (26, 38), (22, 37), (20, 40), (13, 45), (16, 39), (12, 44),
        (8, 44), (3, 43), (-2, 37),
    ],
    "asia": [
        (60, 70), (80, 72), (110, 72), (140, 72), (170, 69), (179.9, 66), (179.9, 62), (160, 60),
        (155, 52), (140, 53), (135, 43), (127, 38), (122, 40), (121, 31), (118, 24), (108, 21),
        (106, 10), (104, 1), (100, 7), (98, 16), (92, 21), (88, 22), (80, 15), (78, 8), (73, 17),
        (72, 22), (66, 25), (57, 25), (56, 27), (50, 30), (48, 29), (52, 24), (56, 26), (59, 22),
        (52, 16), (43, 13), (35, 28), (35, 32), (36, 36), (28, 37), (27, 41), (40, 41), (50, 45),
        (60, 45),
    ],
    "africa": [
        (-17, 21), (-6, 36), (10, 37), (11, 33), (20, 31), (32, 31), (35, 28), (43, 12), (51, 12),
        (40, -3), (40, -15), (35, -25), (26, -34), (18, -34), (12, -17), (14, -5), (9, 4), (-8, 4),
        (-17, 14),
    ],
    "australia": [
        (114, -22), (122, -18), (130, -12), (137, -12), (142, -11), (146, -19), (153, -26),
        (150, -37), (140, -38), (131, -31), (115, -34),
    ],
    "britain": [(-5.5, 50), (1.5, 51), (-1.5, 56), (-5, 58.5), (-6, 55)],
    "japan": [(130, 31), (140, 35), (142, 41), (145, 44), (141, 45), (139, 40), (132, 34)],
    "madagascar": [(44, -25), (47, -25), (50, -15), (49, -12), (44, -16)],
    "borneo": [(109, 1), (117, 7), (119, 5), (116, -4), (110, -3)],
    "new_zealand": [(172, -34), (178, -38), (174, -41), (171, -46), (167, -46), (172, -41)],
}


@lru_cache(maxsize=1)
def _land():
    geom = shapely.union_all([Polygon(p) for p in _OUTLINES.values()])
    shapely.prepare(geom)
    return geom


def is_land(lon, lat) -> np.ndarray:
    """True where (lon, lat) falls on the coarse land mask within LAT_RANGE."""
    lon = np.asarray(lon, dtype=float)
    lat = np.asarray(lat, dtype=float)
    inside = shapely.contains_xy(_land(), lon, lat)
    return inside & (lat >= LAT_RANGE[0]) & (lat <= LAT_RANGE[1])


def sample_land(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``n`` points uniformly (by area) over the coarse land mask."""
    lons: list[np.ndarray] = []
    lats: list[np.ndarray] = []
    got = 0
    s0, s1 = np.sin(np.radians(LAT_RANGE[0])), np.sin(np.radians(LAT_RANGE[1]))
    while got < n:
        m = max(64, 4 * (n - got))
        lon = rng.uniform(-180.0, 180.0, m)
        lat = np.degrees(np.arcsin(rng.uniform(s0, s1, m)))
        ok = is_land(lon, lat)
        lons.append(lon[ok])
        lats.append(lat[ok])
        got += int(ok.sum())
    return np.concatenate(lons)[:n], np.concatenate(lats)[:n]
