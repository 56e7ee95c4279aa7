"""A map of the overlap graph: footprints coloured by degree, edges between their centroids."""

from __future__ import annotations

import io

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

__all__ = ["plot_overlaps"]


def _rings(geoms) -> list[np.ndarray]:
    polys = []
    for g in geoms:
        if g is None or g.is_empty:
            polys.append(np.zeros((0, 2)))
            continue
        parts = list(getattr(g, "geoms", [g]))
        polys.append(np.asarray(max(parts, key=lambda p: p.area).exterior.coords))
    return polys


def plot_overlaps(
    tiles: gpd.GeoDataFrame,
    edges: pd.DataFrame,
    path_or_url: str,
    *,
    storage_options=None,
    title: str | None = None,
    dpi: int = 150,
) -> str:
    """Draw the overlap graph to a PNG.

    Footprints are filled with a colour for their degree (number of overlapping
    tiles, colour bar on the right); each edge is a line between the two
    footprints' centroids. Longitude is scaled by cos(latitude) so shapes look right.

    Args:
        tiles: the tile table (row position = tile index).
        edges: overlap edges (columns a, b).
        path_or_url: where the PNG goes (local path or fsspec URL).
        storage_options: fsspec options (never credentials).
        title: the title (default: counts of tiles, edges, components, max degree).
        dpi: resolution.

    Returns:
        ``path_or_url``.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.collections import LineCollection, PolyCollection

    from spectralearth.pipelines.overlaps import connected_components, degree_stats
    from spectralearth.platform import storage

    n = len(tiles)
    geoms = np.asarray(tiles.geometry.values, dtype=object)
    stats = degree_stats(n, edges)
    degree = stats["degree"]
    ncomp = int(connected_components(n, edges).max() + 1) if n else 0
    ok = np.array([g is not None and not g.is_empty for g in geoms], dtype=bool)
    cent = np.full((n, 2), np.nan)
    if ok.any():
        c = shapely.centroid(geoms[ok])
        cent[ok] = np.column_stack([shapely.get_x(c), shapely.get_y(c)])
    lat0 = float(np.nanmean(cent[:, 1])) if ok.any() else 0.0

    if ok.any():
        b = shapely.total_bounds(geoms[ok])
        wide = (b[2] - b[0]) * max(0.05, np.cos(np.radians(lat0))) / max(1e-6, b[3] - b[1])
    else:
        wide = 1.0
    fig, ax = plt.subplots(figsize=(14, 7.5) if wide > 1.6 else (10, 8), dpi=dpi)
    order = np.argsort(degree[ok], kind="stable")  # high degree drawn last, on top
    rings = [r for r, keep in zip(_rings(geoms), ok) if keep]
    rings = [rings[i] for i in order]
    vmax = max(1, int(degree.max()) if n else 1)
    cmap = plt.get_cmap("viridis")
    norm = matplotlib.colors.Normalize(vmin=0, vmax=vmax)
    dense = n >= 500  # a map of many small footprints: outline them in their own colour
    polys = PolyCollection(
        rings,
        array=degree[ok][order],
        cmap=cmap,
        norm=norm,
        edgecolors="face" if dense else "black",
        linewidths=1.2 if dense else 0.3,
        alpha=0.9 if dense else 0.55,
    )
    ax.add_collection(polys)
    if len(edges):
        a = edges["a"].to_numpy()
        b = edges["b"].to_numpy()
        segs = np.stack([cent[a], cent[b]], axis=1)
        lw = 0.6 if len(edges) < 2000 else 0.4
        ax.add_collection(LineCollection(segs, colors="crimson", linewidths=lw, alpha=0.8, zorder=3 if not dense else 2))
    if ok.any():
        if not dense:
            ax.scatter(cent[ok, 0], cent[ok, 1], s=4, c="black", zorder=4)
        else:  # small footprints vanish on a large map: mark each by a dot sized and coloured by degree
            idx = np.flatnonzero(ok)[order]
            ax.scatter(cent[idx, 0], cent[idx, 1], s=1 + 1.5 * degree[idx], c=degree[idx], cmap=cmap, norm=norm,
                       edgecolors="none", zorder=4)
        b = shapely.total_bounds(geoms[ok])
        padx, pady = 0.03 * (b[2] - b[0] + 1e-6), 0.03 * (b[3] - b[1] + 1e-6)
        ax.set_xlim(b[0] - padx, b[2] + padx)
        ax.set_ylim(b[1] - pady, b[3] + pady)
    ax.set_aspect(1.0 / max(0.05, np.cos(np.radians(lat0))))
    ax.set_xlabel("longitude (°)")
    ax.set_ylabel("latitude (°)")
    ax.grid(True, linewidth=0.3, alpha=0.5)
    cb = fig.colorbar(matplotlib.cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, fraction=0.035, pad=0.02)
    cb.set_label("degree (overlapping tiles)")
    ax.set_title(
        title
        or (
            f"Overlap graph: {n:,} tiles, {len(edges):,} edges, {ncomp:,} connected components\n"
            f"max degree {stats['degree_max']}, mean {stats['degree_mean']:.1f}, "
            f"{stats['degree_gt_30']} tiles with degree > 30, {stats['isolated']} isolated"
        )
    )
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    storage.atomic_write_bytes(path_or_url, buf.getvalue(), storage_options)
    return path_or_url
