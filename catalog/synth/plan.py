"""The acquisition plan: which tiles exist, where, when, on which grid (no pixels).

Datatakes are descending passes of 1-30 consecutive tiles. About half of them
revisit a few dozen hotspots (heavy-tailed popularity), a share of the others
repeat an earlier track on another date, the rest land anywhere on land. Each
tile is a swath rectangle rotated by the heading, on the north-up 30 m UTM grid
of its own scene centre.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache

import numpy as np
from pyproj import Geod, Transformer

from .config import SynthConfig
from .land import sample_land

__all__ = ["TileSpec", "plan_archive", "product_stem", "PIXEL_M", "GROUND_SPEED_M_S"]

PIXEL_M = 30.0
"""Ground sampling distance of the ortho grid (m)."""
GROUND_SPEED_M_S = 6750.0
"""Along-track ground speed used to time the tiles (a 30.7 km tile takes ~4.55 s)."""

_GEOD = Geod(ellps="WGS84")
_P_HOT = 0.25  # share of datatakes revisiting a hotspot
_P_REPEAT = 0.18  # share repeating an earlier track on another date
_HOT_ALONG = 1.5  # hotspot position along track, +- tile lengths
_HOT_ACROSS = 0.9  # hotspot position across track, std in swath widths
# Processor versions by the date a product was processed (newest last).
_VERSIONS = (
    (datetime(2022, 1, 1, tzinfo=UTC), "010200"),
    (datetime(2023, 2, 1, tzinfo=UTC), "010300"),
    (datetime(2023, 9, 1, tzinfo=UTC), "010400"),
    (datetime(2024, 3, 1, tzinfo=UTC), "010402"),
)


@dataclass(frozen=True)
class TileSpec:
    """One planned L2A tile: identity, time, grid, footprint, scene parameters."""

    index: int
    """Position in the plan (chronological)."""
    stem: str
    """Product name without suffix."""
    datatake: int
    """Datatake id."""
    tile: int
    """Tile number within the datatake (1-based)."""
    number_of_tiles: int
    """Tiles in the datatake."""
    start: datetime
    """Acquisition start of the tile (UTC)."""
    stop: datetime
    """Acquisition stop of the tile (UTC)."""
    datatake_start: datetime
    """Start of the datatake (UTC)."""
    datatake_stop: datetime
    """Stop of the datatake (UTC)."""
    version: str
    """Processor version, 6 digits (e.g. "010402")."""
    processed: datetime
    """Processing time (UTC)."""
    epsg: int
    """EPSG code of the UTM zone of the scene centre."""
    transform: tuple[float, float, float, float, float, float]
    """Affine transform of the ortho grid (a, b, c, d, e, f)."""
    width: int
    """Grid columns."""
    height: int
    """Grid rows."""
    swath_xy: tuple[tuple[float, float], ...]
    """Swath corners UL, UR, LR, LL in grid CRS metres."""
    footprint_lonlat: tuple[tuple[float, float], ...]
    """Swath corners UL, UR, LR, LL as (lon, lat)."""
    datatake_lonlat: tuple[tuple[float, float], ...]
    """Datatake corners UL, UR, LR, LL as (lon, lat)."""
    center_lon: float
    """Scene centre longitude."""
    center_lat: float
    """Scene centre latitude."""
    heading_deg: float
    """Flight direction, degrees clockwise from north (descending: ~190-195)."""
    across_track_deg: float
    """Across-track off-nadir pointing angle."""
    sun_elevation_deg: float
    """Sun elevation at the scene centre."""
    sun_azimuth_deg: float
    """Sun azimuth at the scene centre."""
    cloud_cover: float
    """Planned cloud cover of the valid area (percent)."""
    haze_cover: float
    """Planned haze cover (percent)."""
    cirrus_cover: float
    """Planned cirrus cover (percent)."""
    water_vapour: float
    """Relative strength of the residual water-vapour features (about 0.6 ... 1.4)."""
    zipped: bool
    """Delivered as `<stem>.ZIP` rather than a folder."""
    subdir: str
    """Archive subfolder (year/month of acquisition)."""
    pixel_seed: int
    """Seed of this acquisition's clouds and noise."""
    world_seed: int
    """Seed of the land cover (shared by all tiles, so overlaps show the same ground)."""

    @property
    def swath_px(self) -> tuple[int, int]:
        """(across, along) size of the swath in pixels."""
        (x0, y0), (x1, y1), _, (x3, y3) = self.swath_xy
        return round(math.hypot(x1 - x0, y1 - y0) / PIXEL_M), round(math.hypot(x3 - x0, y3 - y0) / PIXEL_M)


def product_stem(datatake: int, start: datetime, tile: int, version: str, processed: datetime) -> str:
    """Build an L2A product stem."""
    return (
        f"ENMAP01-____L2A-DT{datatake:010d}_{start:%Y%m%dT%H%M%SZ}_{tile:03d}"
        f"_V{version}_{processed:%Y%m%dT%H%M%SZ}"
    )


@lru_cache(maxsize=256)
def _to_utm(epsg: int) -> Transformer:
    return Transformer.from_crs(4326, epsg, always_xy=True)


@lru_cache(maxsize=256)
def _from_utm(epsg: int) -> Transformer:
    return Transformer.from_crs(epsg, 4326, always_xy=True)


def _utm_epsg(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    zone = np.clip(np.floor((np.asarray(lon) + 180.0) / 6.0).astype(int) + 1, 1, 60)
    return np.where(np.asarray(lat) >= 0, 32600, 32700) + zone


def _version_for(processed: datetime) -> str:
    out = _VERSIONS[0][1]
    for since, version in _VERSIONS:
        if processed >= since:
            out = version
    return out


def _sun(lat: float, when: datetime, local_hour: float) -> tuple[float, float]:
    doy = when.timetuple().tm_yday
    decl = math.radians(23.44) * math.sin(2 * math.pi * (284 + doy) / 365.0)
    phi = math.radians(lat)
    h = math.radians(15.0 * (local_hour - 12.0))
    sin_el = math.sin(phi) * math.sin(decl) + math.cos(phi) * math.cos(decl) * math.cos(h)
    el = math.asin(max(-1.0, min(1.0, sin_el)))
    cos_az = (math.sin(decl) - math.sin(el) * math.sin(phi)) / max(1e-9, math.cos(el) * math.cos(phi))
    az = math.degrees(math.acos(max(-1.0, min(1.0, cos_az))))
    if h > 0:
        az = 360.0 - az
    return math.degrees(el), az


def _datatakes(config: SynthConfig, rng: np.random.Generator) -> list[dict]:
    """Draw datatakes until they hold ``config.tiles`` tiles."""
    n_total = config.tiles
    wm = config.swath_px * PIXEL_M
    lm = config.length_px * PIXEL_M
    n_hot = config.hotspots if config.hotspots is not None else int(np.clip(round(n_total / 300), 1, 40))
    hot_lon, hot_lat = sample_land(rng, max(1, n_hot))
    popularity = 1.0 / np.arange(1, len(hot_lon) + 1) ** 0.8
    popularity /= popularity.sum()
    days = (config.end_date - config.start_date).days + 1
    out: list[dict] = []
    fresh: list[dict] = []
    total = 0
    # small archives revisit more, so that even a dozen tiles overlap on several dates
    small = math.exp(-n_total / 150.0)
    p_hot = _P_HOT + (0.9 - _P_HOT - _P_REPEAT) * small
    spread = 1.0 - 0.6 * small
    while total < n_total:
        u = rng.random()
        overlap = rng.uniform(0.02, 0.05)
        step = lm * (1.0 - overlap)
        if u < p_hot:  # hotspot revisit
            h = int(rng.choice(len(hot_lon), p=popularity))
            n = 1 + min(int(rng.poisson(1.0)), 29)
            k = int(rng.integers(n))
            lat_ref = float(hot_lat[h])
            dev = _deviation(lat_ref, rng)
            az = 180.0 + dev
            lon, lat, _ = _GEOD.fwd(hot_lon[h], hot_lat[h], az, rng.uniform(-_HOT_ALONG, _HOT_ALONG) * spread * lm)
            lon, lat, _ = _GEOD.fwd(lon, lat, az + 90.0, rng.normal(0.0, _HOT_ACROSS * spread * wm))
            lon, lat, _ = _GEOD.fwd(lon, lat, az, -k * step)
            pointing = rng.uniform(-30.0, 30.0)
        elif u < p_hot + _P_REPEAT and fresh:  # repeat of an earlier track on another date
            ref = fresh[int(rng.integers(len(fresh)))]
            n = max(1, min(30, ref["n"] + int(rng.integers(-2, 3))))
            dev = ref["dev"] + rng.normal(0.0, 0.2)
            az = 180.0 + dev
            lon, lat, _ = _GEOD.fwd(ref["lon"], ref["lat"], az, rng.uniform(-1.0, 1.0) * step)
            lon, lat, _ = _GEOD.fwd(lon, lat, az + 90.0, rng.normal(0.0, 0.5 * wm))
            pointing = rng.uniform(-30.0, 30.0)
        else:  # a fresh track anywhere on land
            lon_a, lat_a = sample_land(rng, 1)
            lon, lat = float(lon_a[0]), float(lat_a[0])
            n = int(np.clip(1 + round(rng.lognormal(math.log(5.0), 0.8)), 1, 30))
            dev = _deviation(lat, rng)
            az = 180.0 + dev
            pointing = float(np.clip(rng.normal(0.0, 6.0), -30.0, 30.0))
        n = min(n, n_total - total, max(1, math.ceil(n_total / 4)))
        day = config.start_date + timedelta(days=int(rng.integers(days)))
        local_hour = 11.0 + rng.normal(0.0, 0.15)
        utc_hour = local_hour - lon / 15.0
        start = datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(hours=utc_hour % 24.0)
        start = start.replace(microsecond=int(rng.integers(0, 1_000_000)))
        dt = {
            "lon": float(lon), "lat": float(lat), "az": az, "dev": dev, "n": n, "step": step,
            "start": start, "pointing": float(pointing), "local_hour": local_hour,
            "wv": float(rng.uniform(0.6, 1.4)), "cloudiness": float(rng.random()),
        }
        out.append(dt)
        if u >= p_hot + _P_REPEAT:
            fresh.append(dt)
        total += n
    return out


_INCLINATION_DEG = 97.96  # EnMAP's sun-synchronous orbit
_TRACK_SPEED = 6830.0  # m/s: speed of the sub-satellite point at EnMAP's 653 km altitude
_SURFACE_SPEED = 465.1  # m/s: the Earth's surface at the equator (omega * R)


def _deviation(lat: float, rng: np.random.Generator) -> float:
    """Angle between the descending ground track and south (degrees) at latitude ``lat``.

    The orbit plane crosses a parallel at ``asin(cos i / cos lat)`` from the meridian
    (i = 97.96°: ~8° at the equator, more toward the poles), and the Earth turning east
    under the satellite adds ``omega * R * cos(lat)`` of westward ground speed. This gives
    11.8° at the equator and 14.4° at 47.8°, where the real sample's scene azimuth is 14.25°.
    """
    c = math.cos(math.radians(lat))
    s = min(abs(math.cos(math.radians(_INCLINATION_DEG))) / max(c, 1e-6), 0.9)  # capped short of the turning latitude
    beta = math.asin(s)
    dev = math.degrees(math.atan2(_TRACK_SPEED * math.sin(beta) + _SURFACE_SPEED * c, _TRACK_SPEED * math.cos(beta)))
    return float(dev + rng.normal(0.0, 0.3))


def plan_archive(config: SynthConfig) -> list[TileSpec]:
    """Plan the archive: one TileSpec per tile, chronological, deterministic by ``config.seed``.

    Pure and fast (no pixels): the full SpectralEarth scale (11,636 tiles) plans in seconds.

    Args:
        config: archive parameters.

    Returns:
        Tile specs ordered by acquisition start (then tile number).
    """
    rng = np.random.default_rng([config.seed, 0x5EED])
    dts = _datatakes(config, rng)
    dts.sort(key=lambda d: d["start"])
    dt_ids = 1000 + np.cumsum(rng.integers(1, 12, len(dts)))
    wm = config.swath_px * PIXEL_M
    lm = config.length_px * PIXEL_M

    # tile centres along each datatake (vectorised geodesic steps)
    rows = [(i, k) for i, d in enumerate(dts) for k in range(d["n"])]
    di = np.array([r[0] for r in rows])
    kk = np.array([r[1] for r in rows], dtype=float)
    lon0 = np.array([d["lon"] for d in dts])[di]
    lat0 = np.array([d["lat"] for d in dts])[di]
    az0 = np.array([d["az"] for d in dts])[di]
    step = np.array([d["step"] for d in dts])[di]
    dist = kk * step
    clon, clat, back = _GEOD.fwd(lon0, lat0, az0, dist)
    clat = np.clip(clat, -84.0, 84.0)
    caz = np.where(dist > 0, (np.asarray(back) + 180.0) % 360.0, az0 % 360.0)
    alon, alat, _ = _GEOD.fwd(clon, clat, caz, np.full_like(clon, 1000.0))
    epsg = _utm_epsg(clon, clat)

    n = len(rows)
    cx, cy, ax, ay = (np.empty(n) for _ in range(4))
    for code in np.unique(epsg):
        sel = epsg == code
        tr = _to_utm(int(code))
        cx[sel], cy[sel] = tr.transform(clon[sel], clat[sel])
        ax[sel], ay[sel] = tr.transform(alon[sel], alat[sel])
    gaz = np.arctan2(ax - cx, ay - cy)  # grid azimuth of the flight direction
    f = np.stack([np.sin(gaz), np.cos(gaz)], axis=1)  # forward unit vector
    p = np.stack([-f[:, 1], f[:, 0]], axis=1)  # across track, pointing east-ish for descending
    c = np.stack([cx, cy], axis=1)
    ul = c - f * lm / 2 - p * wm / 2
    ur = c - f * lm / 2 + p * wm / 2
    lr = c + f * lm / 2 + p * wm / 2
    ll = c + f * lm / 2 - p * wm / 2
    corners = np.stack([ul, ur, lr, ll], axis=1)  # (n, 4, 2)
    xmin = np.floor((corners[..., 0].min(1) - 15.0) / PIXEL_M) * PIXEL_M + 15.0
    xmax = np.ceil((corners[..., 0].max(1) - 15.0) / PIXEL_M) * PIXEL_M + 15.0
    ymin = np.floor((corners[..., 1].min(1) - 15.0) / PIXEL_M) * PIXEL_M + 15.0
    ymax = np.ceil((corners[..., 1].max(1) - 15.0) / PIXEL_M) * PIXEL_M + 15.0
    widths = np.rint((xmax - xmin) / PIXEL_M).astype(int)
    heights = np.rint((ymax - ymin) / PIXEL_M).astype(int)
    lonlat = np.empty_like(corners)
    for code in np.unique(epsg):
        sel = epsg == code
        x, y = _from_utm(int(code)).transform(corners[sel, :, 0].ravel(), corners[sel, :, 1].ravel())
        lonlat[sel, :, 0] = np.asarray(x).reshape(-1, 4)
        lonlat[sel, :, 1] = np.asarray(y).reshape(-1, 4)

    # per-tile scene draws, in plan order
    clear = rng.random(n) < 0.45
    cloud = np.where(clear, rng.uniform(0.0, 1.0, n), rng.beta(0.8, 3.2, n) * 100.0)
    haze = cloud * rng.uniform(0.0, 0.4, n)
    cirrus = np.where(rng.random(n) < 0.7, 0.0, rng.uniform(0.0, 12.0, n))
    zipped = rng.random(n) < config.zip_fraction
    pixel_seeds = rng.integers(0, 2**62, n)
    delay_h = rng.uniform(1.0, 24.0 * 20, n)

    specs: list[TileSpec] = []
    for j, (i, k) in enumerate(rows):
        d = dts[i]
        start = d["start"] + timedelta(seconds=k * d["step"] / GROUND_SPEED_M_S)
        stop = start + timedelta(seconds=lm / GROUND_SPEED_M_S)
        dt_stop = d["start"] + timedelta(seconds=((d["n"] - 1) * d["step"] + lm) / GROUND_SPEED_M_S)
        processed = (dt_stop + timedelta(hours=float(delay_h[j]))).replace(microsecond=0)
        version = _version_for(processed)
        datatake = int(dt_ids[i])
        first = j - k
        last = first + d["n"] - 1
        sun_el, sun_az = _sun(float(clat[j]), start, d["local_hour"])
        # cloudiness is shared a little along a datatake
        cc = float(np.clip(0.6 * cloud[j] + 0.4 * d["cloudiness"] * cloud[j] * 1.5, 0.0, 100.0))
        specs.append(
            TileSpec(
                index=j,
                stem=product_stem(datatake, start, k + 1, version, processed),
                datatake=datatake,
                tile=k + 1,
                number_of_tiles=d["n"],
                start=start,
                stop=stop,
                datatake_start=d["start"],
                datatake_stop=dt_stop,
                version=version,
                processed=processed,
                epsg=int(epsg[j]),
                transform=(PIXEL_M, 0.0, float(xmin[j]), 0.0, -PIXEL_M, float(ymax[j])),
                width=int(widths[j]),
                height=int(heights[j]),
                swath_xy=tuple((float(x), float(y)) for x, y in corners[j]),
                footprint_lonlat=tuple((float(x), float(y)) for x, y in lonlat[j]),
                datatake_lonlat=(
                    tuple(map(float, lonlat[first, 0])), tuple(map(float, lonlat[first, 1])),
                    tuple(map(float, lonlat[last, 2])), tuple(map(float, lonlat[last, 3])),
                ),
                center_lon=float(clon[j]),
                center_lat=float(clat[j]),
                heading_deg=float(caz[j]),
                across_track_deg=d["pointing"],
                sun_elevation_deg=sun_el,
                sun_azimuth_deg=sun_az,
                cloud_cover=round(cc, 3),
                haze_cover=round(float(haze[j]), 3),
                cirrus_cover=round(float(cirrus[j]), 3),
                water_vapour=d["wv"],
                zipped=bool(zipped[j]),
                subdir=f"{start:%Y}/{start:%m}",
                pixel_seed=int(pixel_seeds[j]),
                world_seed=int(config.seed),
            )
        )
    return specs
