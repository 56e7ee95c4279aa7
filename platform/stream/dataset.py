"""Stream a patch cube from object storage into training: :class:`PatchStream`.

    stream = PatchStream("s3://bucket/cube", mode="pair", batch_size=32, seed=0)
    loader = stream.loader(num_workers=6, pin_memory=True)   # a counting DataLoader
    norm = stream.normalizer().to("cuda")                      # int16 in, float32 out
    for epoch in range(start_epoch, epochs):
        stream.set_epoch(epoch)
        for batch in loader:
            x = norm(batch["image"].to("cuda", non_blocking=True))
            ...
            checkpoint = {"stream": loader.state_dict(), ...}      # any step, any time

Who reads what (see :mod:`spectralearth.platform.order`): an epoch's global
order is a pure function of ``(seed, epoch)``; rank ``r`` of ``W`` reads every
``W``-th position, its DataLoader workers take whole batches round-robin, which
is the order in which the DataLoader hands them out. The number of samples a
training loop has consumed therefore fixes the position in the global order,
and :meth:`PatchStream.state_dict` needs only that count.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from spectralearth.platform.cube import locate_version
from spectralearth.platform.normalize import BandNormalize
from spectralearth.platform.order import ShuffleSpec, draw_views, epoch_order, rank_positions
from spectralearth.platform.order import worker_batches
from spectralearth.platform import reader
from spectralearth.platform.reader import RetryPolicy, open_source, prefetch_map, read_view
from spectralearth.platform.world import World, detect_world

__all__ = ["PatchStream", "StreamLoader", "resolve_bands"]

log = logging.getLogger(__name__)

MODES = ("single", "pair")
STATE_VERSION = 1


def _loader_iterators(limit: int = 40):
    """DataLoader iterator objects on the calling stack (the one creating this iterator, or forking this worker)."""
    frame = sys._getframe(1)
    while frame is not None and limit > 0:
        obj = frame.f_locals.get("self")
        if obj is not None and hasattr(obj, "_auto_collation") and hasattr(obj, "_dataset"):
            yield obj
        frame, limit = frame.f_back, limit - 1


def resolve_bands(wavelength: np.ndarray, bands: Sequence[int] | Sequence[tuple[float, float]] | None) -> np.ndarray | None:
    """Indices of the stored bands to keep.

    Args:
        wavelength: centre wavelength (nm) of each stored band.
        bands: None (all), indices into the stored bands, or ``(low_nm, high_nm)``
            ranges (inclusive; a band is kept if its centre lies in any range).

    Returns:
        Sorted-as-given indices, or None for all bands.
    """
    if bands is None:
        return None
    items = list(bands)
    if not items:
        raise ValueError("bands is empty")
    wl = np.asarray(wavelength, dtype=np.float64)
    if all(isinstance(b, tuple | list) and len(b) == 2 for b in items):
        keep = np.zeros(wl.size, dtype=bool)
        for lo, hi in items:
            keep |= (wl >= float(lo)) & (wl <= float(hi))
        if not keep.any():
            raise ValueError(f"no band centre lies within {items} nm (cube covers {wl.min():.0f}-{wl.max():.0f} nm)")
        return np.flatnonzero(keep)
    idx = np.asarray(items, dtype=np.int64)
    if idx.ndim != 1 or np.any(idx < 0) or np.any(idx >= wl.size):
        raise ValueError(f"band indices must lie within [0, {wl.size}), got {items}")
    return idx


class _Index:
    """The small arrays the stream needs, read once (plain numpy, picklable)."""

    def __init__(self, url: str, storage_options: Mapping[str, Any] | None, version: str | int | None = None) -> None:
        self.location = locate_version(url, version, storage_options=storage_options)
        self.version = self.location.version.id
        group = self.location.open_group(storage_options=storage_options)
        px = int(group.attrs.get("spectralearth:patch_px", 128))
        self.n_views = self.location.n_views
        self.n_bands = int(group["band"].shape[0])
        self.shape = (self.n_bands, px, px)
        self.view_start = np.asarray(group["patch_view_start"][:], np.int64)
        self.view_count = np.asarray(group["patch_view_count"][:], np.int64)
        self.view_patch = np.asarray(group["view_patch"][:], np.int64)
        self.view_time = np.asarray(group["view_time"][:], np.int64)
        self.wavelength = np.asarray(group["wavelength"][:], np.float32)
        self.band_mean = np.asarray(group["band_mean"][:], np.float32)
        self.band_std = np.asarray(group["band_std"][:], np.float32)
        self.n_patches = self.view_start.size

    def chunk_key(self, view: int) -> str:
        """Object key (relative to the cube) of a view's chunk in this version."""
        return self.location.chunk_key(view)


class _BatchBuffers:
    """Batch buffers that views are decoded into, without a copy on the way out.

    In a DataLoader worker a buffer is allocated in shared memory, so sending the
    batch to the main process passes a handle instead of copying it (the main
    process owns it from then on: never reused). In the iterating process itself
    a buffer whose tensors the consumer has dropped is reused, which saves the
    page faults and zeroing of a fresh allocation per batch; at most ``keep``
    buffers are held for reuse.
    """

    def __init__(self, *, in_worker: bool, keep: int) -> None:
        self.in_worker = in_worker
        self.keep = keep
        self._held: list[np.ndarray] = []

    def take(self, shape: tuple[int, ...]) -> tuple[torch.Tensor, np.ndarray]:
        """A ``(tensor, ndarray)`` pair over the same int16 memory of ``shape``."""
        if self.in_worker:
            storage = torch.UntypedStorage._new_shared(int(np.prod(shape)) * 2)
            image = torch.tensor([], dtype=torch.int16).set_(storage, 0, shape)
            return image, image.numpy()
        for buf in self._held:
            # references: the list, the loop variable and getrefcount's argument; any
            # tensor or view the consumer still holds keeps the array alive and adds one
            if buf.shape == shape and sys.getrefcount(buf) <= 3:
                return torch.from_numpy(buf), buf
        buf = np.empty(shape, dtype=np.int16)
        if len(self._held) < self.keep:
            self._held.append(buf)
        return torch.from_numpy(buf), buf


class PatchStream(IterableDataset):
    """An iterable dataset over the patches of a cube, sharded over ranks and workers.

    Args:
        cube_url: cube URL (local path or ``s3://bucket/prefix``).
        version: the cube version to read (``"v2"``; None: the latest committed when the index is first read).
        mode: ``"single"`` (one view per sample) or ``"pair"`` (two distinct views of
            the same patch; the same view twice for single-date patches).
        every_view: single mode only: iterate every view once per epoch instead of
            every patch once with one of its views drawn at random.
        bands: band subset: indices into the stored bands, or ``(low_nm, high_nm)`` ranges.
        shuffle: shuffle the epoch order (False: storage order).
        seed: seed of the order and of the view draws.
        storage_options: fsspec-style options (secrets only from the environment).
        rank, world_size: explicit distributed position (default: torch.distributed,
            then the ``RANK``/``WORLD_SIZE`` environment, then a single process).
        batch_size: yield collated batches of this size (use ``DataLoader(batch_size=None)``
            or :meth:`loader`); None yields single samples.
        policy: ``"pad"`` (repeat samples from the start of the epoch order so every
            rank gets the same count) or ``"drop"`` (leave out the incomplete last round).
        shuffle_block: units permuted together as one block (1: uniform permutation).
        shuffle_window: extra windowed shuffle (a shuffle buffer of this many samples).
        io_threads: concurrent chunk requests per iterating process.
        prefetch_bytes: decoded bytes held ahead of the consumer per iterating process.
        backend: chunk source (``"auto"``, ``"local"``, ``"obstore"``, ``"fsspec"``).
        retry: retries of transient storage errors.

    Each sample is a dict: ``image`` (int16, ``bands x y x x``, or ``2 x bands x y x x``
    in pair mode), ``patch`` (int64), ``view`` (int64, or 2 of them), ``time``
    (acquisition start in microseconds since 1970, like ``view``), ``position``
    (position in the epoch's global order).
    """

    def __init__(
        self,
        cube_url: str,
        *,
        version: str | int | None = None,
        mode: str = "single",
        every_view: bool = False,
        bands: Sequence[int] | Sequence[tuple[float, float]] | None = None,
        shuffle: bool = True,
        seed: int = 0,
        storage_options: Mapping[str, Any] | None = None,
        rank: int | None = None,
        world_size: int | None = None,
        batch_size: int | None = None,
        policy: str = "pad",
        shuffle_block: int = 1,
        shuffle_window: int = 0,
        io_threads: int = 8,
        prefetch_bytes: int = 256 * 2**20,
        backend: str = "auto",
        retry: RetryPolicy = RetryPolicy(),
    ) -> None:
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if every_view and mode == "pair":
            raise ValueError("every_view applies to single mode only")
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if policy not in ("pad", "drop"):
            raise ValueError(f"policy must be 'pad' or 'drop', got {policy!r}")
        self.cube_url = cube_url
        self.version = version
        self.mode = mode
        self.every_view = every_view
        self.bands = bands
        self.shuffle = ShuffleSpec(enabled=shuffle, block=shuffle_block, window=shuffle_window)
        self.seed = int(seed)
        self.storage_options = dict(storage_options or {})
        self.rank = rank
        self.world_size = world_size
        self.batch_size = batch_size
        self.policy = policy
        self.io_threads = int(io_threads)
        self.prefetch_bytes = int(prefetch_bytes)
        self.backend = backend
        self.retry = retry
        self.epoch = 0
        self._start = 0
        self._index: _Index | None = None
        self._source = None
        self._source_pid: int | None = None
        self._buffers: _BatchBuffers | None = None
        self._buffers_pid: int | None = None
        self._parent_world: tuple[int, int] | None = None
        self._yielded = 0  # samples this process yielded since the (resumed part of the) epoch began
        self._done_batches = 0  # items (batches) this DataLoader worker yielded, resumed ones included
        self._resume_batches = 0
        self._resume_layout: tuple[int, int, int, int] | None = None
        self._sent_to_workers = False

    # -- pickling: numpy index travels, storage clients never do ---------------
    def __getstate__(self) -> dict:
        # pickled for DataLoader workers (spawn, forkserver): the rank and world size are
        # those of the process that builds the iterator, where torch.distributed is set up
        if get_worker_info() is None:
            self._check_loaders()
            self._sent_to_workers = True
            world = detect_world(rank=self.rank, world_size=self.world_size)
            self._parent_world = (world.rank, world.world_size)
        state = dict(self.__dict__)
        state["_source"] = None
        state["_source_pid"] = None
        state["_buffers"] = None
        state["_buffers_pid"] = None
        return state

    def _world(self) -> World:
        """Rank and world size (explicit, else captured in the parent, else detected here), and the worker."""
        if self.rank is None and self._parent_world is not None and get_worker_info() is not None:
            rank, size = self._parent_world
            return detect_world(rank=rank, world_size=size)
        return detect_world(rank=self.rank, world_size=self.world_size)

    def _check_loaders(self) -> None:
        """Refuse DataLoader settings that break the count-based exact resume."""
        for it in _loader_iterators():
            if getattr(it, "_dataset", None) is not self and get_worker_info() is None:
                continue
            if getattr(it, "_auto_collation", False):
                raise ValueError(
                    "the DataLoader batches this PatchStream itself (batch_size set on the DataLoader): that breaks "
                    "the order and exact resume; set batch_size on the PatchStream and use "
                    "DataLoader(stream, batch_size=None) or stream.loader()")
            if getattr(it, "_in_order", True) is False:
                raise ValueError("DataLoader(in_order=False) hands out batches out of order, which breaks exact "
                                 "resume; leave in_order=True")
            if getattr(it, "_persistent_workers", False):
                raise ValueError("persistent_workers would keep the first epoch's order; leave it off")

    @property
    def index(self) -> _Index:
        """The cube's index arrays (read on first use)."""
        if self._index is None:
            self._index = _Index(self.cube_url, self.storage_options, self.version)
        return self._index

    def _chunks(self):
        if self._source is None or self._source_pid != os.getpid():
            self._source = open_source(self.cube_url, storage_options=self.storage_options, backend=self.backend)
            self._source_pid = os.getpid()
        return self._source

    def _batch_buffers(self, *, in_worker: bool, keep: int) -> _BatchBuffers:
        # kept across epochs: a fresh batch buffer costs page faults and zeroing of
        # every page, as much CPU time as a large part of a view's decode
        b = self._buffers
        if b is None or self._buffers_pid != os.getpid() or b.in_worker != in_worker or b.keep < keep:
            b = self._buffers = _BatchBuffers(in_worker=in_worker, keep=keep)
            self._buffers_pid = os.getpid()
        return b

    @property
    def band_index(self) -> np.ndarray | None:
        """Indices of the stored bands that samples carry (None: all)."""
        return resolve_bands(self.index.wavelength, self.bands)

    @property
    def n_units(self) -> int:
        """Samples in one epoch over all ranks (before padding or dropping)."""
        return self.index.n_views if self.every_view else self.index.n_patches

    # -- epochs and resume ---------------------------------------------------
    def set_epoch(self, epoch: int) -> None:
        """Select the epoch to iterate next (call before each epoch, as with DistributedSampler).

        A different epoch than the current one starts at its beginning; the same
        epoch keeps a position restored by :meth:`load_state_dict`.
        """
        if int(epoch) != self.epoch:
            self.epoch = int(epoch)
            self._start = 0
            self._yielded = 0
            self._resume_batches = self._done_batches = 0
            self._resume_layout = None

    def state_dict(self, *, samples_seen: int | None = None) -> dict:
        """The stream's position, as a small JSON-able dict.

        Args:
            samples_seen: samples this rank took from the loader since the epoch (or the
                resumed part of it) started (:class:`StreamLoader` counts them). None:
                the samples this process itself yielded when iterated in-process; in a
                DataLoader worker (torchdata ``StatefulDataLoader`` calls it there), the
                batches this worker yielded.

        Returns:
            The global count consumed, seed, epoch and layout checks; from a worker also
            the worker's place and batch count (restored by the same worker on resume).
        """
        info = get_worker_info()
        world = self._world()
        state: dict[str, Any] = {
            "version": STATE_VERSION,
            "epoch": self.epoch,
            "seed": self.seed,
            "mode": self.mode,
            "every_view": self.every_view,
            "n_units": int(self.n_units),
            "shuffle": [self.shuffle.enabled, self.shuffle.block, self.shuffle.window],
        }
        if samples_seen is None and info is not None:
            state.update(consumed=int(self._start), worker=world.worker, num_workers=world.num_workers,
                         rank=world.rank, world_size=world.world_size, worker_batches=int(self._done_batches))
            return state
        if samples_seen is None:
            if self._sent_to_workers and self._yielded == 0:
                raise RuntimeError("this PatchStream is iterated in DataLoader workers, so this process does not "
                                   "see what the loop consumed: use stream.loader(...).state_dict(), or torchdata's "
                                   "StatefulDataLoader, or pass samples_seen")
            samples_seen = self._yielded
        state["consumed"] = int(min(self._start + int(samples_seen) * world.world_size, self.n_units))
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from a :meth:`state_dict` (any world size, any number of workers).

        A worker's state (from a ``StatefulDataLoader``) resumes that worker: the same
        number of workers and ranks is needed, as ``StatefulDataLoader`` requires anyway.
        """
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"stream state version {state.get('version')!r} is not {STATE_VERSION}")
        expected = {
            "seed": self.seed, "mode": self.mode, "every_view": self.every_view, "n_units": int(self.n_units),
            "shuffle": [self.shuffle.enabled, self.shuffle.block, self.shuffle.window],
        }
        for key, value in expected.items():
            if list(state[key]) != value if isinstance(value, list) else state[key] != value:
                raise ValueError(f"stream state was saved with {key}={state[key]!r}, this stream has {value!r}")
        self.epoch = int(state["epoch"])
        self._start = int(state["consumed"])
        self._yielded = 0
        if "worker_batches" in state:
            self._resume_batches = self._done_batches = int(state["worker_batches"])
            self._resume_layout = (int(state["worker"]), int(state["num_workers"]), int(state["rank"]),
                                   int(state["world_size"]))
        else:
            self._resume_batches = self._done_batches = 0
            self._resume_layout = None

    # -- what this process reads ---------------------------------------------
    def _plan(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Global positions, units and views (n, k) for this rank's whole remaining epoch."""
        world = self._world()
        idx = self.index
        order = epoch_order(self.n_units, seed=self.seed, epoch=self.epoch, shuffle=self.shuffle)
        positions = rank_positions(self.n_units, start=self._start, rank=world.rank,
                                   world_size=world.world_size, policy=self.policy)
        units = order[positions]
        if self.every_view:
            views = units[:, None]
        else:
            drawn = draw_views(idx.view_start, idx.view_count, seed=self.seed, epoch=self.epoch,
                               pair=self.mode == "pair")
            views = drawn[units].reshape(units.size, -1)
        return positions, units, views

    def __len__(self) -> int:
        """Items (batches when ``batch_size`` is set) this rank yields in the rest of the epoch."""
        world = self._world()
        n = rank_positions(self.n_units, start=self._start, rank=world.rank, world_size=world.world_size,
                           policy=self.policy).size
        return -(-n // self.batch_size) if self.batch_size else n

    def __iter__(self) -> Iterator[dict]:
        self._check_loaders()
        world = self._world()
        in_worker = get_worker_info() is not None
        skip = 0
        if self._resume_layout is not None:
            here = (world.worker, world.num_workers, world.rank, world.world_size)
            if in_worker and here == self._resume_layout:
                skip = self._resume_batches
            elif not in_worker or here[1:] != self._resume_layout[1:]:
                raise ValueError(f"a worker state saved as worker/workers/rank/world {self._resume_layout} cannot "
                                 f"resume as {here}; resume a StatefulDataLoader with the same workers and ranks")
        self._done_batches = skip
        self._yielded = 0
        return self._iterate(world, skip, in_worker)

    def _iterate(self, world: World, skip: int, in_worker: bool) -> Iterator[dict]:
        positions, units, views = self._plan()
        batch = self.batch_size or 1
        ranges = worker_batches(positions.size, batch=batch, worker=world.worker, num_workers=world.num_workers)
        ranges = ranges[skip:]
        mine = np.fromiter((i for r in ranges for i in r), dtype=np.int64, count=sum(len(r) for r in ranges))
        if mine.size == 0:
            return
        idx = self.index
        band_index = self.band_index
        source = self._chunks()
        shape = idx.shape
        out_shape = shape if band_index is None else (band_index.size, *shape[1:])
        k = views.shape[1]
        groups = ranges if self.batch_size else [range(i, i + 1) for i in mine]
        scratch = threading.local()
        view_bytes = int(np.prod(out_shape)) * 2
        depth = max(self.io_threads, self.prefetch_bytes // max(view_bytes, 1))
        buffers = self._batch_buffers(in_worker=in_worker, keep=-(-depth // (len(groups[0]) * k)) + 2)

        # one buffer per batch, each view decoded straight into its slot (no stacking copy);
        # a task reads a run of a batch's views, so that a batch is split over the
        # I/O threads with as few hand-offs between threads as that allows
        per_task = max(1, -(-len(groups[0]) * k // max(self.io_threads, 1)))

        def tasks():
            for r in groups:
                image, buf = buffers.take((len(r), k, *out_shape))
                slots = [(int(views[i, t]), j, t) for j, i in enumerate(r) for t in range(k)]
                for s in range(0, len(slots), per_task):
                    yield image, buf, slots[s:s + per_task]

        def read(task) -> torch.Tensor:
            image, buf, slots = task
            for view, j, t in slots:
                patch = int(idx.view_patch[view])
                if band_index is None:
                    read_view(source, view, patch=patch, shape=shape, retry=self.retry, out=buf[j, t], key=idx.chunk_key(view))
                else:
                    tmp = getattr(scratch, "buf", None)
                    if tmp is None:
                        tmp = scratch.buf = np.empty(shape, dtype=np.int16)
                    read_view(source, view, patch=patch, shape=shape, retry=self.retry, out=tmp, key=idx.chunk_key(view))
                    np.take(tmp, band_index, axis=0, out=buf[j, t])
            return image

        done = prefetch_map(read, tasks(), threads=self.io_threads, depth=-(-depth // per_task))
        try:
            for r in groups:
                image = None
                for _ in range(-(-len(r) * k // per_task)):
                    image = next(done)
                rows = np.fromiter(r, dtype=np.int64, count=len(r))
                item = self._batch(image, positions[rows], views[rows], idx)
                image = None
                # counted before the hand-over: a StatefulDataLoader snapshot taken after
                # this item includes it
                self._done_batches += 1
                self._yielded += len(r)
                yield item if self.batch_size else {key: value[0] for key, value in item.items()}
                del item
        finally:
            done.close()

    def _batch(self, image: torch.Tensor, positions: np.ndarray, views: np.ndarray, idx: _Index) -> dict:
        single = views.shape[1] == 1
        view = views[:, 0] if single else views
        return {
            "image": image[:, 0] if single else image,
            "patch": torch.from_numpy(idx.view_patch[views[:, 0]]),
            "view": torch.from_numpy(np.ascontiguousarray(view, dtype=np.int64)),
            "time": torch.from_numpy(np.ascontiguousarray(idx.view_time[view])),
            "position": torch.from_numpy(np.ascontiguousarray(positions, dtype=np.int64)),
        }

    # -- helpers ----------------------------------------------------------------
    def normalizer(self) -> BandNormalize:
        """A GPU-side normalization module for this stream's bands (cube band_mean/band_std)."""
        idx = self.index
        sel = self.band_index
        mean = idx.band_mean if sel is None else idx.band_mean[sel]
        std = idx.band_std if sel is None else idx.band_std[sel]
        return BandNormalize(mean, std)

    def loader(self, **dataloader_kwargs: Any) -> StreamLoader:
        """A :class:`StreamLoader` over this stream (DataLoader keyword arguments, no batch_size)."""
        return StreamLoader(self, **dataloader_kwargs)


def _forkserver():
    """The forkserver context, its server preloading the stream (workers start without importing torch anew)."""
    import multiprocessing

    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["spectralearth.platform.stream.dataset"])  # only before the server starts
    return ctx


class StreamLoader:
    """A DataLoader over a :class:`PatchStream` that counts what the loop consumed.

    ``state_dict()`` then needs no argument. The stream batches itself (its
    ``batch_size``); the DataLoader gets ``batch_size=None``. Workers are started
    afresh each epoch (``persistent_workers`` would keep an old epoch's order).
    """

    def __init__(self, stream: PatchStream, **dataloader_kwargs: Any) -> None:
        if "batch_size" in dataloader_kwargs:
            raise ValueError("set batch_size on the PatchStream; the loader passes its batches through")
        if dataloader_kwargs.get("persistent_workers"):
            raise ValueError("persistent_workers would keep the first epoch's order; leave it off")
        self.stream = stream
        self.dataloader_kwargs = dataloader_kwargs
        self.samples_seen = 0

    def __len__(self) -> int:
        return len(self.stream)

    def __iter__(self) -> Iterator[dict]:
        self.samples_seen = 0
        world = detect_world(rank=self.stream.rank, world_size=self.stream.world_size)
        self.stream._parent_world = (world.rank, world.world_size)  # forked workers get it too
        kwargs = dict(self.dataloader_kwargs)
        if kwargs.get("num_workers") and kwargs.get("multiprocessing_context") is None and reader.obstore_started_here():
            # obstore's runtime does not survive a fork: workers that start after this process
            # read S3 with obstore would fall back to s3fs; forkserver keeps them on obstore
            log.info("this process already read S3 with obstore: DataLoader workers start with forkserver")
            kwargs["multiprocessing_context"] = _forkserver()
        loader = DataLoader(self.stream, batch_size=None, **kwargs)
        for item in loader:
            self.samples_seen += int(item["patch"].numel()) if self.stream.batch_size else 1
            yield item

    def state_dict(self) -> dict:
        """The stream position after the samples this loader has handed out."""
        return self.stream.state_dict(samples_seen=self.samples_seen)

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Resume the stream from a saved position."""
        self.stream.load_state_dict(state)
        self.samples_seen = 0
