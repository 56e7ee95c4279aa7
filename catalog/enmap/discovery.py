"""Finding EnMAP L2A products in an archive, in every layout they are delivered in.

An archive is any fsspec URL (local folder, ``s3://bucket/prefix``, ``https://…``). Product
files are recognised by their own names, ``<stem>-<SUFFIX>`` (suffix in any case), wherever
they lie:

- loose in any folder (several products may share one folder),
- in a folder named after the product, ``…/<stem>/<stem>-<SUFFIX>``,
- in DLR order folders, ``<order>/ENMAP.HSI.L2A/<stem>/<stem>-<SUFFIX>``,
- inside ``.ZIP`` or ``.tar.gz`` / ``.tgz`` / ``.tar`` order downloads (any case), at any
  depth, several products per archive.

One recursive listing finds the files and archives; only archives are opened, and then only
their member list (the ZIP central directory; a compressed tar has to be read through).
Names starting with ``_`` or ``.`` are ignored at any depth. A product found in more than one
place (a folder and the ZIP it came from) is one product: the most complete delivery is used,
a folder before an archive, and the others are counted as skipped duplicates.

Archive member names are validated before they become URLs: ``::`` (fsspec URL chaining),
``..`` parts, absolute paths, backslashes and control characters make the products they
belong to quarantined, and links or special files in a tar are never followed.
"""

from __future__ import annotations

import posixpath
import re
import tarfile
import zipfile
from collections import Counter
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from spectralearth.catalog.enmap.naming import PREFIX, SUFFIXES, ProductName, looks_like_product, split_file_name
from spectralearth.catalog.enmap.product import ProductSource, open_file
from spectralearth.catalog.errors import MetadataError, NamingError, ProductError
from spectralearth.platform import storage

__all__ = ["ARCHIVE_KINDS", "Discovery", "archive_kind", "discover_products", "unsafe_member_reason"]

ARCHIVE_KINDS: dict[str, str] = {".zip": "zip", ".tar.gz": "tar", ".tgz": "tar", ".tar": "tar"}
"""File name endings (compared in lower case) of the archives that are opened, and their kind."""

SKIP_HIDDEN = "hidden or staging (a name starting with _ or .)"
SKIP_NOT_PRODUCT = "not an EnMAP product file"
SKIP_SUFFIX = "unknown product file suffix"
SKIP_EMPTY_ARCHIVE = "archive without EnMAP product files"
SKIP_LINK = "link or special file in a tar archive"
SKIP_DUPLICATE = "duplicate delivery of a product found elsewhere"

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class Discovery:
    """The products found in an archive, and what could not be used."""

    sources: tuple[ProductSource, ...]
    """Usable products, sorted by product id."""
    problems: tuple[ProductError, ...]
    """Products (or would-be products) that cannot be used, each naming why."""
    searched: str = ""
    """The URL that was searched."""
    files_listed: int = 0
    """Files listed under it (archive members not counted)."""
    skipped: Mapping[str, int] = field(default_factory=dict)
    """Files, archives and deliveries left aside, counted by reason."""
    duplicates: tuple[tuple[str, str, str], ...] = ()
    """``(product, ignored URL, used URL)`` for each product delivered more than once."""

    def describe(self) -> str:
        """One line: what was searched and what was skipped, by reason."""
        parts = [f"searched {self.searched} ({self.files_listed} files listed)"]
        if self.skipped:
            parts.append("skipped: " + ", ".join(f"{n} {why}" for why, n in sorted(self.skipped.items())))
        else:
            parts.append("nothing skipped")
        return "; ".join(parts)


def archive_kind(name: str) -> str | None:
    """``"zip"`` or ``"tar"`` if a file name is an archive that discovery opens, else None."""
    low = name.lower()
    for end, kind in ARCHIVE_KINDS.items():
        if low.endswith(end):
            return kind
    return None


def unsafe_member_reason(name: str) -> str | None:
    """Why an archive member name must not be used, or None if it is safe.

    A member name becomes part of a chained fsspec URL (``zip://<member>::<archive>``), so
    ``::`` would change what is read; ``..``, absolute paths and backslashes could escape
    the archive when unpacked; control characters hide what the name is.
    """
    if "::" in name:
        return "contains '::' (would chain another URL)"
    if _CONTROL.search(name):
        return "contains control characters"
    if "\\" in name:
        return "contains a backslash"
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        return "is an absolute path"
    if ".." in name.split("/"):
        return "has a '..' part"
    return None


def _url(fs, path: str) -> str:
    """Turn a path listed by ``fs`` back into a URL that fsspec opens with the same filesystem."""
    protocols = (fs.protocol,) if isinstance(fs.protocol, str) else fs.protocol
    if "file" in protocols or "local" in protocols:
        return path
    return fs.unstrip_protocol(path)


def _hidden(parts: list[str]) -> bool:
    return any(p.startswith(("_", ".")) and p != "." for p in parts)


@dataclass
class _Candidate:
    """One delivery of one product while discovery runs."""

    name: ProductName
    url: str
    delivery: str
    files: dict[str, str] = field(default_factory=dict)

    def rank(self) -> tuple:
        # the most complete delivery first, then a folder before an archive
        return ("METADATA.XML" not in self.files, "SPECTRAL_IMAGE.TIF" not in self.files,
                -len(self.files), self.delivery != "folder", self.url)


class _Scan:
    """Accumulates what one discovery run sees."""

    def __init__(self):
        self.candidates: dict[tuple[str, str], _Candidate] = {}  # (stem, delivery url) -> candidate
        self.problems: list[ProductError] = []
        self.skipped: Counter[str] = Counter()
        self.tainted: dict[str, str] = {}  # stem -> why its archive cannot be trusted

    def file(self, base: str, *, where: str, delivery: str, file_url: str, container_url: str) -> bool:
        """Classify one file name; returns True if it is a product file."""
        if not looks_like_product(base):
            self.skipped[SKIP_NOT_PRODUCT] += 1
            return False
        try:
            name, suffix = split_file_name(base)
        except NamingError as exc:
            if base.startswith(PREFIX):
                self.problems.append(NamingError(where, exc.message, key=exc.key))
            else:
                self.skipped[SKIP_NOT_PRODUCT] += 1
            return False
        suffix = suffix.upper() if suffix else None
        if suffix not in SUFFIXES:
            self.skipped[SKIP_SUFFIX if suffix else SKIP_NOT_PRODUCT] += 1
            return False
        cand = self.candidates.setdefault((name.stem, container_url), _Candidate(name, container_url, delivery))
        # prefer the file whose name is exactly the canonical one (upper-case suffix)
        if suffix not in cand.files or base == name.filename(suffix):
            cand.files[suffix] = file_url
        return True


def _archive_members(url: str, kind: str, storage_options) -> list[tuple[str, bool]]:
    """``(member name, is a regular file)`` of a ZIP or tar archive."""
    with open_file(url, storage_options=storage_options) as f:
        if kind == "zip":
            return [(i.filename, not i.is_dir()) for i in zipfile.ZipFile(f).infolist()]
        with tarfile.open(fileobj=f, mode="r:*") as tar:
            return [(m.name, m.isfile()) for m in tar.getmembers() if not m.isdir()]


def _scan_archive(scan: _Scan, url: str, kind: str, storage_options) -> ProductError | None:
    try:
        members = _archive_members(url, kind, storage_options)
    except (zipfile.BadZipFile, tarfile.TarError, EOFError) as exc:
        return NamingError(url, f"not a readable {kind.upper()} archive ({exc})", key=kind)
    except OSError as exc:
        return NamingError(url, f"cannot read the {kind.upper()} archive ({exc})", key=kind)
    found = 0
    for member, regular in members:
        parts = [p for p in member.split("/") if p]
        if not parts:
            continue
        base = parts[-1]
        why = unsafe_member_reason(member)
        if why is None and _hidden(parts):
            scan.skipped[SKIP_HIDDEN] += 1
            continue
        if why is not None or not regular:
            try:  # the product it would belong to (a backslash may stand for a folder separator)
                stem = ProductName.parse(re.split(r"[\\/]", member)[-1]).stem
            except NamingError:
                stem = None
            if why is None:  # a link or device in a tar: never followed
                scan.skipped[SKIP_LINK] += 1
                if stem is None:
                    continue
                why = "is a link or special file"
            if stem is not None:
                scan.tainted.setdefault(stem, f"{url}: member {member!r} {why}")
            else:
                scan.problems.append(NamingError(url, f"member {member!r} {why}", key="member"))
            continue
        if scan.file(base, where=f"{url}!{member}", delivery=kind, file_url=f"{kind}://{member}::{url}", container_url=url):
            found += 1
    if not found:
        scan.skipped[SKIP_EMPTY_ARCHIVE] += 1
    return None


def discover_products(
    archive_url: str,
    *,
    storage_options: Mapping[str, Any] | None = None,
    max_workers: int = 16,
) -> Discovery:
    """Find every EnMAP L2A product under an archive URL.

    One recursive listing finds product files and archives; each archive's member list is
    then read (in ``max_workers`` threads).

    Args:
        archive_url: local path or fsspec URL of the archive root.
        storage_options: fsspec options (the S3 endpoint is added from the environment).
        max_workers: threads reading archive member lists.

    Returns:
        The usable products sorted by id; the problems (bad product names, archives that
        cannot be read or hold unsafe member names, products without METADATA.XML); and
        what was searched and skipped, counted by reason.
    """
    fs, root = storage.filesystem(archive_url, storage_options)
    root = root.rstrip("/")
    listing = fs.find(root, detail=True)
    scan = _Scan()
    archives: list[tuple[str, str]] = []
    listed = 0
    for path, info in sorted(listing.items()):
        if info.get("type") == "directory":
            continue
        listed += 1
        rel = path[len(root):].strip("/").split("/") if path.rstrip("/") != root else [posixpath.basename(path)]
        if _hidden(rel):
            scan.skipped[SKIP_HIDDEN] += 1
            continue
        base = rel[-1]
        kind = archive_kind(base)
        if kind is not None:
            archives.append((_url(fs, path), kind))
            continue
        scan.file(base, where=_url(fs, path), delivery="folder", file_url=_url(fs, path),
                  container_url=_url(fs, posixpath.dirname(path)))

    if archives:
        with ThreadPoolExecutor(max_workers=max(1, min(max_workers, len(archives)))) as pool:
            # each archive is scanned into its own _Scan, merged in order (deterministic)
            def one(item):
                sub = _Scan()
                return sub, _scan_archive(sub, item[0], item[1], storage_options)

            for sub, problem in pool.map(one, archives):
                if problem is not None:
                    scan.problems.append(problem)
                scan.problems.extend(sub.problems)
                scan.skipped.update(sub.skipped)
                for stem, why in sub.tainted.items():
                    scan.tainted.setdefault(stem, why)
                for key, cand in sub.candidates.items():
                    scan.candidates[key] = cand

    by_stem: dict[str, list[_Candidate]] = {}
    for cand in scan.candidates.values():
        by_stem.setdefault(cand.name.stem, []).append(cand)
    sources: list[ProductSource] = []
    duplicates: list[tuple[str, str, str]] = []
    for stem in sorted(by_stem):
        if stem in scan.tainted:
            scan.problems.append(NamingError(stem, f"unsafe archive member name: {scan.tainted[stem]}", key="member"))
            continue
        ranked = sorted(by_stem[stem], key=_Candidate.rank)
        best = ranked[0]
        for other in ranked[1:]:
            scan.skipped[SKIP_DUPLICATE] += 1
            duplicates.append((stem, other.url, best.url))
        if "METADATA.XML" not in best.files:
            scan.problems.append(MetadataError(stem, f"METADATA.XML missing in {best.url}", key="METADATA.XML"))
            continue
        files = tuple((s, best.files[s]) for s in SUFFIXES if s in best.files)
        sources.append(ProductSource(stem, best.name, best.url, best.delivery, files))
    for stem, why in scan.tainted.items():
        if stem not in by_stem:
            scan.problems.append(NamingError(stem, f"unsafe archive member name: {why}", key="member"))
    problems = sorted(scan.problems, key=lambda e: (e.product, e.key or "", e.message))
    return Discovery(
        sources=tuple(sources),
        problems=tuple(problems),
        searched=_url(fs, root) if root else archive_url,
        files_listed=listed,
        skipped=dict(sorted(scan.skipped.items())),
        duplicates=tuple(duplicates),
    )
