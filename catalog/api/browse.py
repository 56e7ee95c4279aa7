"""The browsing page and its JSON endpoints, mounted on the STAC API app of either backend.

Routes (all GET):

=====================================  =====================================================
``/browse/``                           the page (``catalog/web/static/index.html``)
``/browse/static/{name}``              the page's files, from a table made at start-up
``/browse/api/aggregate``              patch counts on a lon/lat grid within a bbox (zoomed-out map)
``/browse/api/thumbnail/{id}.png``     the pseudo-RGB thumbnail of a patch item
``/browse/api/spectrum/{id}``          reflectance of one pixel (``row``, ``col``) for every view
``/browse/api/download/{id}.tif``      the patch's views as one GeoTIFF
``/browse/api/land.geojson``           coarse land outlines (the map's offline background)
=====================================  =====================================================

No request reaches the filesystem with a path of its own: static files are served from
a table filled at start-up, and an item id must match ``patch-NNNNNNN-VERSION`` of the
served cube version with a patch number inside the cube, before any object is read.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Mapping
from importlib import resources
from typing import Any

import numpy as np

from spectralearth.platform import storage

__all__ = ["PatchLookup", "add_browse_routes"]

_ID_RE = re.compile(r"^patch-(\d{7})-([A-Za-z0-9][A-Za-z0-9._-]{0,63})$")
_MEDIA = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
          ".png": "image/png", ".svg": "image/svg+xml", ".json": "application/json"}
MAX_CELLS = 20000


class PatchLookup:
    """The served cube version's patches: ids, centres and where each item's views are."""

    def __init__(self, catalog_url: str, storage_options: Mapping[str, Any] | None):
        from spectralearth.catalog.patches import PATCHES_DIR, _footprints, published_versions, read_cube_index

        self.catalog_url = catalog_url
        self.storage_options = storage_options
        versions = published_versions(catalog_url, storage_options=storage_options)
        self.version = versions[-1] if versions else None
        self.index = None
        if self.version is None:
            self.lon = self.lat = np.zeros(0)
            return
        base = storage.join(catalog_url, PATCHES_DIR, f"version={self.version}")
        manifest = json.loads(storage.read_bytes(storage.join(base, "manifest.json"), storage_options))
        self.cube_href = manifest["cube"]
        self.index = read_cube_index(self.cube_href, self.version, storage_options=storage_options)
        lon, lat = _footprints(self.index)
        self.lon, self.lat = lon[:, :4].mean(axis=1), lat[:, :4].mean(axis=1)
        self.thumbs = storage.join(catalog_url, PATCHES_DIR, "thumbnails", self.version)
        self._ring = (lon, lat)

    def patch_of(self, item_id: str) -> int:
        """The patch number of a served item id; ``KeyError`` for any other string."""
        m = _ID_RE.match(item_id)
        if not m or self.index is None or m.group(2) != self.version:
            raise KeyError(item_id)
        p = int(m.group(1))
        if p >= len(self.index.view_start):
            raise KeyError(item_id)
        return p

    def item(self, item_id: str) -> dict:
        """The full STAC item of a served id (as published)."""
        from spectralearth.catalog.patches import patch_item_dicts

        p = self.patch_of(item_id)
        thumb = lambda iid: storage.join(self.thumbs, f"{iid}.png")  # noqa: E731
        return next(patch_item_dicts(self.index, cube_href=self.cube_href, thumbnail_href=thumb, patches=np.array([p]), footprints=self._ring))

    def thumbnail(self, item_id: str) -> bytes:
        p = self.patch_of(item_id)
        from spectralearth.catalog.patches import item_id as make_id

        return storage.read_bytes(storage.join(self.thumbs, f"{make_id(self.version, p)}.png"), self.storage_options)

    def aggregate(self, bbox: tuple[float, float, float, float], cells: int) -> dict[str, Any]:
        """Counts of patch centres in a ``cells`` x ``cells`` grid over ``bbox`` (non-empty cells only)."""
        w, s, e, n = bbox
        sel = (self.lon >= w) & (self.lon <= e) & (self.lat >= s) & (self.lat <= n)
        lon, lat = self.lon[sel], self.lat[sel]
        dx, dy = (e - w) / cells, (n - s) / cells
        counts, _, _ = np.histogram2d(lon, lat, bins=[cells, cells], range=[[w, e], [s, n]])
        ix, iy = np.nonzero(counts)
        # centre of mass of each cell's patches, so a marker sits on its patches
        cx = np.clip(((lon - w) / dx).astype(int), 0, cells - 1)
        cy = np.clip(((lat - s) / dy).astype(int), 0, cells - 1)
        key = cx * cells + cy
        sums_lon = np.bincount(key, weights=lon, minlength=cells * cells)
        sums_lat = np.bincount(key, weights=lat, minlength=cells * cells)
        k = ix * cells + iy
        c = counts[ix, iy]
        return {
            "bbox": [w, s, e, n],
            "total": int(sel.sum()),
            "cells": [
                {"lon": round(float(a), 5), "lat": round(float(b), 5), "count": int(m)}
                for a, b, m in zip(sums_lon[k] / c, sums_lat[k] / c, c, strict=True)
            ],
        }


def _static_table() -> dict[str, tuple[bytes, str]]:
    """Every file of the page, read once: name -> (bytes, media type)."""
    root = resources.files("spectralearth.catalog.web") / "static"
    table = {}

    def walk(node, prefix=""):
        for entry in node.iterdir():
            if entry.is_dir():
                walk(entry, f"{prefix}{entry.name}/")
            else:
                ext = "." + entry.name.rsplit(".", 1)[-1] if "." in entry.name else ""
                table[f"{prefix}{entry.name}"] = (entry.read_bytes(), _MEDIA.get(ext, "application/octet-stream"))

    walk(root)
    return table


def _land_geojson() -> bytes:
    from spectralearth.catalog.synth.land import _OUTLINES

    feats = [{"type": "Feature", "properties": {"name": k}, "geometry": {"type": "Polygon", "coordinates": [[list(p) for p in (*v, v[0])]]}}
             for k, v in _OUTLINES.items()]
    return json.dumps({"type": "FeatureCollection", "features": feats}).encode()


def add_browse_routes(app, config, *, storage_options: Mapping[str, Any] | None = None) -> None:
    """Add the page and its endpoints to ``app`` (a FastAPI app)."""
    from fastapi import HTTPException, Path, Query
    from fastapi.responses import RedirectResponse, Response

    from spectralearth.catalog.pixels import export_patch, pixel_spectra

    files = _static_table()
    lookup = PatchLookup(config.catalog_url, storage_options)
    land = _land_geojson()
    idpath = Path(..., max_length=80, pattern=r"^[A-Za-z0-9._-]+$")

    def known(item_id: str) -> dict:
        try:
            return lookup.item(item_id)
        except KeyError:
            raise HTTPException(404, f"no patch item {item_id!r} in the served cube version {lookup.version}") from None

    @app.get("/browse", include_in_schema=False)
    def browse_root():
        return RedirectResponse("/browse/")

    @app.get("/browse/", include_in_schema=False)
    def browse_page():
        body, media = files["index.html"]
        return Response(body, media_type=media)

    @app.get("/browse/static/{name:path}", include_in_schema=False)
    def browse_static(name: str):
        if name not in files:
            raise HTTPException(404, f"no file {name!r} in the page")
        body, media = files[name]
        return Response(body, media_type=media, headers={"cache-control": "max-age=3600"})

    @app.get("/browse/api/info", tags=["Browse"])
    def browse_info():
        """The served patch version and its extent."""
        if lookup.index is None:
            return {"version": None, "patches": 0}
        return {"version": lookup.version, "patches": int(len(lookup.lon)),
                "bbox": [float(lookup.lon.min()), float(lookup.lat.min()), float(lookup.lon.max()), float(lookup.lat.max())]}

    @app.get("/browse/api/aggregate", tags=["Browse"])
    def browse_aggregate(bbox: str = Query(..., max_length=200, description="west,south,east,north (WGS84)"),
                         cells: int = Query(24, ge=1, le=100, description="grid cells per side")):
        """Patch counts on a grid (for the zoomed-out map)."""
        try:
            w, s, e, n = (float(v) for v in bbox.split(","))
        except ValueError:
            raise HTTPException(400, f"parameter 'bbox' must be 4 numbers west,south,east,north, got {bbox!r}") from None
        if not (-180 <= w < e <= 180 and -90 <= s < n <= 90):
            raise HTTPException(400, f"parameter 'bbox' must satisfy -180 <= west < east <= 180 and -90 <= south < north <= 90, got {bbox!r}")
        return lookup.aggregate((w, s, e, n), cells)

    @app.get("/browse/api/thumbnail/{item_id}.png", tags=["Browse"])
    def browse_thumbnail(item_id: str = idpath):
        known(item_id)
        try:
            return Response(lookup.thumbnail(item_id), media_type="image/png", headers={"cache-control": "max-age=3600"})
        except FileNotFoundError:
            raise HTTPException(404, f"item {item_id!r} has no thumbnail (published without thumbnails)") from None

    @app.get("/browse/api/item/{item_id}", tags=["Browse"])
    def browse_item(item_id: str = idpath):
        """The patch item as published (with the cube asset's views)."""
        return known(item_id)

    @app.get("/browse/api/spectrum/{item_id}", tags=["Browse"])
    def browse_spectrum(item_id: str = idpath, row: int = Query(..., ge=0, le=4095), col: int = Query(..., ge=0, le=4095)):
        """Reflectance of pixel (row, col) of the patch in every view, against wavelength (nm)."""
        item = known(item_id)
        try:
            return pixel_spectra(item, row, col, storage_options=storage_options)
        except ValueError as exc:
            raise HTTPException(400, str(exc)) from None

    @app.get("/browse/api/download/{item_id}.tif", tags=["Browse"])
    def browse_download(item_id: str = idpath):
        """The patch's views as one GeoTIFF (float32 reflectance; band = view x wavelength)."""
        item = known(item_id)
        buf = io.BytesIO()
        export_patch(item, buf, storage_options=storage_options)
        return Response(buf.getvalue(), media_type="image/tiff; application=geotiff",
                        headers={"content-disposition": f'attachment; filename="{item["id"]}.tif"'})

    @app.get("/browse/api/land.geojson", include_in_schema=False)
    def browse_land():
        return Response(land, media_type="application/geo+json", headers={"cache-control": "max-age=86400"})
