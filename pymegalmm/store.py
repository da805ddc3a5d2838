"""Former home of the on-disk store, now :mod:`pymegalmm.run.store`."""

from .run.store import MAX_CHUNK_BYTES, PosteriorStore, _chunks_for, _has_dask

__all__ = ["MAX_CHUNK_BYTES", "PosteriorStore", "_chunks_for", "_has_dask"]
