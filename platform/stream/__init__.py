"""Stream a patch cube from object storage into training.

:class:`PatchStream` (a torch ``IterableDataset``) and :class:`StreamLoader`
live in :mod:`.dataset`; this package re-exports them.
"""

from spectralearth.platform.stream.dataset import PatchStream, StreamLoader, resolve_bands

__all__ = ["PatchStream", "StreamLoader", "resolve_bands"]
