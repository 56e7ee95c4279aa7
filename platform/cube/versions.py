"""Versions of a cube: immutable manifests committed by a create-only write.

    CUBE/versions/00000001.json     version 1's manifest
    CUBE/versions/00000002.json     version 2's manifest (parent: version 1)
    CUBE/builds/<build-id>/         the views each build added, and each build's index

A build that started from version *n* commits version *n + 1* by creating
``versions/<n+1>.json`` with a create-only write: ``If-None-Match: *`` on S3 (AWS
S3 and SeaweedFS answer 412 to all writers but one, atomically), ``link(2)`` of a
fully written temporary file on local disk (fails with ``EEXIST`` if the name is
taken). That write is the compare-and-swap on the version pointer: of two builders
from the same parent exactly one creates the name, the other gets
:class:`VersionConflictError` naming the version and the build that won. Everything
a manifest points at is written before it, and a manifest is created whole, so a
reader that lists ``versions/`` never sees a partial version. Nothing is ever
rewritten: older versions stay readable byte for byte.

The latest version is the highest sequence number listed (S3 listings are strongly
consistent on AWS since 2020 and on SeaweedFS).
"""

from __future__ import annotations

import errno
import json
import os
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from spectralearth.platform import storage

__all__ = [
    "CubeNotCommittedError",
    "Version",
    "VersionConflictError",
    "VersionNotFoundError",
    "commit_version",
    "list_versions",
    "put_if_absent",
    "read_version",
    "resolve_version",
]

VERSIONS = "versions"
_NAME = re.compile(r"^(\d{8})\.json$")


class CubeNotCommittedError(FileNotFoundError):
    """No committed version at the URL (absent, or its first build has not finished)."""


class VersionNotFoundError(LookupError):
    """The cube has no version of that id."""


class VersionConflictError(RuntimeError):
    """Another build committed the version this build was going to commit."""

    def __init__(self, message: str, *, version: str, winner: Version) -> None:
        super().__init__(message)
        self.version = version
        self.winner = winner


@dataclass(frozen=True)
class Version:
    """One committed version (the parsed manifest)."""

    sequence: int
    """1, 2, ...: the version's position in the cube's history."""
    build: str
    """Build whose index this version reads (``CUBE/builds/<build>/index``)."""
    builds: tuple[str, ...]
    """Every build holding chunks of this version (``view_build`` indexes this list)."""
    parent: str | None = None
    """Id of the version this one was built from."""
    created: str = ""
    """Commit time (ISO 8601, UTC)."""
    run_id: str = ""
    """Id of the run that committed it."""
    counts: dict[str, int] = field(default_factory=dict)
    """views, patches, bands, new_views, reused_views."""
    attrs: dict[str, Any] = field(default_factory=dict)
    """Source catalog and snapshot, plan fingerprint, pipeline config and its hash, ..."""

    @property
    def id(self) -> str:
        """The version id: ``v<sequence>``."""
        return f"v{self.sequence}"

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "sequence": self.sequence, "parent": self.parent, "build": self.build,
                "builds": list(self.builds), "created": self.created, "run_id": self.run_id,
                "counts": dict(self.counts), "attrs": dict(self.attrs)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Version:
        return cls(sequence=int(d["sequence"]), build=str(d["build"]), builds=tuple(d["builds"]),
                   parent=d.get("parent"), created=str(d.get("created", "")), run_id=str(d.get("run_id", "")),
                   counts={k: int(v) for k, v in (d.get("counts") or {}).items()}, attrs=dict(d.get("attrs") or {}))


def _manifest_url(cube_url: str, sequence: int) -> str:
    return storage.join(cube_url, VERSIONS, f"{int(sequence):08d}.json")


def put_if_absent(url: str, data: bytes, storage_options: Mapping[str, Any] | None = None) -> bool:
    """Create the object at ``url`` with ``data`` unless it exists; True if this call created it.

    Atomic: of concurrent callers exactly one gets True, and readers see the whole
    object or none. S3: ``PUT`` with ``If-None-Match: *``. Local disk: the bytes are
    written and fsynced to a unique temporary name, then ``link(2)``-ed to the name.
    """
    fs, path = storage.filesystem(url, storage_options)
    if storage.protocol_of(url) == "file":
        parent = os.path.dirname(path)
        os.makedirs(parent, exist_ok=True)
        tmp = os.path.join(parent, f".{os.path.basename(path)}.tmp-{uuid.uuid4().hex[:12]}")
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        finally:
            os.unlink(tmp)
        return True
    try:
        fs.pipe_file(path, data, mode="create")
    except FileExistsError:
        return False
    except OSError as exc:  # s3fs maps a 412 without a Condition element to EINVAL
        response = getattr(exc.__cause__, "response", None) or {}
        status = (response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
        code = (response.get("Error") or {}).get("Code")
        if exc.errno == errno.EINVAL and (status == 412 or code == "PreconditionFailed"):
            return False
        raise
    return True


def list_versions(cube_url: str, *, storage_options: Mapping[str, Any] | None = None) -> list[Version]:
    """Every committed version of the cube, oldest first (empty if none)."""
    fs, path = storage.filesystem(storage.join(cube_url, VERSIONS), storage_options)
    fs.invalidate_cache(path)
    try:
        names = fs.ls(path, detail=False)
    except FileNotFoundError:
        return []
    seqs = sorted(int(m.group(1)) for m in (_NAME.match(n.rstrip("/").rsplit("/", 1)[-1]) for n in names) if m)
    return [read_version(cube_url, s, storage_options=storage_options) for s in seqs]


def _latest_sequence(cube_url: str, storage_options) -> int | None:
    fs, path = storage.filesystem(storage.join(cube_url, VERSIONS), storage_options)
    fs.invalidate_cache(path)
    try:
        names = fs.ls(path, detail=False)
    except FileNotFoundError:
        return None
    seqs = [int(m.group(1)) for m in (_NAME.match(n.rstrip("/").rsplit("/", 1)[-1]) for n in names) if m]
    return max(seqs) if seqs else None


def read_version(cube_url: str, sequence: int, *, storage_options: Mapping[str, Any] | None = None) -> Version:
    """The manifest of version ``sequence``."""
    url = _manifest_url(cube_url, sequence)
    try:
        return Version.from_dict(json.loads(storage.read_bytes(url, storage_options)))
    except FileNotFoundError:
        raise VersionNotFoundError(f"{storage.redact(cube_url)} has no version v{int(sequence)}") from None


def resolve_version(cube_url: str, version: str | int | None = None, *,
                    storage_options: Mapping[str, Any] | None = None) -> Version:
    """The version ``version`` (``"v3"``, ``"3"`` or ``3``) of the cube, or its latest when None.

    Raises:
        CubeNotCommittedError: the cube has no committed version (absent, or its first build is running).
        VersionNotFoundError: the cube has no such version.
        ValueError: ``version`` is not a version id.
    """
    if version is None:
        seq = _latest_sequence(cube_url, storage_options)
        if seq is None:
            raise CubeNotCommittedError(f"no committed cube at {storage.redact(cube_url)} (absent, or its first build has not finished)")
        return read_version(cube_url, seq, storage_options=storage_options)
    text = str(version).strip()
    m = re.fullmatch(r"v?(\d+)", text)
    if not m or int(m.group(1)) < 1:
        raise ValueError(f"not a version id: {version!r} (expected v1, v2, ...)")
    if _latest_sequence(cube_url, storage_options) is None:
        raise CubeNotCommittedError(f"no committed cube at {storage.redact(cube_url)} (absent, or its first build has not finished)")
    return read_version(cube_url, int(m.group(1)), storage_options=storage_options)


def commit_version(cube_url: str, version: Version, *, storage_options: Mapping[str, Any] | None = None) -> Version:
    """Commit ``version`` (its sequence must be its parent's + 1) with one create-only write.

    Raises:
        VersionConflictError: another build committed that sequence first.
    """
    body = json.dumps(storage.redact(version.to_dict()), indent=1, sort_keys=True).encode()
    if put_if_absent(_manifest_url(cube_url, version.sequence), body, storage_options):
        return version
    winner = read_version(cube_url, version.sequence, storage_options=storage_options)
    same = "the same plan and settings" if winner.build == version.build else "another plan or other settings"
    raise VersionConflictError(
        f"{storage.redact(cube_url)}: version {winner.id} was committed by run {winner.run_id} at {winner.created} "
        f"(build {winner.build}, {same}) while this run (build {version.build}) was building on "
        f"{version.parent or 'an empty cube'}; nothing of this run was committed. Rerun to build on {winner.id}.",
        version=winner.id, winner=winner,
    )
