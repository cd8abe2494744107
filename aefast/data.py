"""Batching and streams: arrays, memmaps and iterables of chunks.

The one entry point here, :func:`iter_chunks`, turns whatever a user hands to a
streaming ``fit`` into a sequence of 2-D chunks of a fixed number of rows:

* an in-memory array (or a ``numpy.memmap``) is sliced into row blocks that are
  *views*, so nothing is ever copied whole;
* a ``numpy.memmap`` additionally has the pages of each block released from the
  process (``madvise(MADV_DONTNEED)``) once the consumer asks for the next block,
  so that streaming a file much larger than memory keeps the resident set size
  flat (the pages stay in the kernel's page cache, they are just no longer
  mapped into this process);
* any other iterable (a list of arrays, a generator, a file reader) is
  re-chunked: large chunks are split, small ones buffered and concatenated, so
  that the consumer always sees ``chunk_size`` rows except for the last chunk.

Because the chunk boundaries depend only on the row count and ``chunk_size``,
streaming an iterable gives exactly the same chunks as streaming the
concatenated array.
"""

import mmap
import numbers

import numpy as np

__all__ = ["iter_chunks", "is_chunk_iterable"]


def is_chunk_iterable(X):
    """Tell whether ``X`` is an iterable of 2-D chunks rather than one array.

    Parameters
    ----------
    X : object
        Candidate input.

    Returns
    -------
    bool
        ``True`` for generators, iterators and lists/tuples whose elements are
        2-D array-likes; ``False`` for NumPy arrays (memmaps included), objects
        exposing ``__array__``/``shape`` (pandas, sparse matrices) and
        lists/tuples of rows (the usual scikit-learn array-like).
    """
    if isinstance(X, np.ndarray) or hasattr(X, "__array__") or hasattr(X, "shape"):
        return False
    if isinstance(X, (str, bytes)):
        return False
    if isinstance(X, (list, tuple)):
        if len(X) == 0:
            return False
        return all(np.ndim(x) == 2 for x in X)
    return hasattr(X, "__iter__") or hasattr(X, "__next__")


def _find_mmap(X):
    """Return the ``mmap.mmap`` object backing a ``numpy.memmap`` (or None)."""
    while X is not None:
        mm = getattr(X, "_mmap", None)
        if isinstance(mm, mmap.mmap):
            return mm
        X = getattr(X, "base", None)
    return None


class _PageReleaser:
    """Release the pages of consumed row blocks of a C-contiguous memmap.

    Only shared mappings (``mode`` ``'r'`` and ``'r+'``) are released: for those
    ``MADV_DONTNEED`` drops the process's mapping while the data (and any
    unflushed writes) stay in the page cache, so a later access simply faults
    the page back in. Copy-on-write mappings (``mode='c'``) are left alone,
    because there ``MADV_DONTNEED`` would discard the user's modifications.
    """

    def __init__(self, X):
        self.mm = None
        if not (isinstance(X, np.memmap) and X.flags.c_contiguous):
            return
        if getattr(X, "mode", None) not in ("r", "r+", "readwrite"):
            return
        if not hasattr(mmap, "MADV_DONTNEED"):
            return
        mm = _find_mmap(X)
        if mm is None or mm.closed:
            return
        try:
            # address of the start of the mapping; a read-only buffer is fine here
            base = np.frombuffer(mm, dtype=np.uint8, count=1).ctypes.data
        except (TypeError, ValueError, BufferError):
            return
        self.mm = mm
        self.base = base
        self.size = len(mm)
        self.data = X.ctypes.data
        self.row_bytes = X.strides[0]
        self.page = mmap.PAGESIZE
        # pages before the array's first byte (e.g. a .npy header) may go too
        self.done = (self.data - self.base) // self.page * self.page

    def release(self, stop_row):
        """Release the whole pages before row ``stop_row`` not released yet."""
        if self.mm is None or self.mm.closed:
            return
        hi = self.data - self.base + stop_row * self.row_bytes
        hi = min(hi, self.size) // self.page * self.page
        if hi > self.done:
            try:
                self.mm.madvise(mmap.MADV_DONTNEED, self.done, hi - self.done)
            except (OSError, ValueError):
                self.mm = None
                return
            self.done = hi


def _check_chunk_size(chunk_size):
    if (
        isinstance(chunk_size, (bool, np.bool_))
        or not isinstance(chunk_size, numbers.Integral)
        or chunk_size < 1
    ):
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}.")
    return int(chunk_size)


def _iter_array(X, chunk_size, release_pages):
    n = X.shape[0]
    releaser = _PageReleaser(X) if release_pages else None
    for start in range(0, n, chunk_size):
        stop = min(start + chunk_size, n)
        yield X[start:stop]
        if releaser is not None:
            # a page shared with the next block is released with that block
            releaser.release(stop)


def _iter_iterable(chunks, chunk_size):
    buf = []
    buffered = 0
    n_features = None
    for i, chunk in enumerate(chunks):
        if not hasattr(chunk, "shape") or getattr(chunk, "ndim", None) is None:
            chunk = np.asarray(chunk)
        if chunk.ndim != 2:
            raise ValueError(
                f"Each chunk must be a 2-D array of shape (n_samples, n_features); "
                f"chunk {i} has {chunk.ndim} dimension(s) (shape={chunk.shape})."
            )
        if n_features is None:
            n_features = chunk.shape[1]
        elif chunk.shape[1] != n_features:
            raise ValueError(
                f"Chunk {i} has {chunk.shape[1]} features, but the previous chunks "
                f"have {n_features} features."
            )
        pos = 0
        n = chunk.shape[0]
        if buffered == 0:
            # fast path: hand out views of the chunk itself
            while n - pos >= chunk_size:
                yield chunk[pos : pos + chunk_size]
                pos += chunk_size
        while pos < n:
            take = min(chunk_size - buffered, n - pos)
            buf.append(chunk[pos : pos + take])
            buffered += take
            pos += take
            if buffered == chunk_size:
                yield buf[0] if len(buf) == 1 else _concat(buf)
                buf, buffered = [], 0
    if buffered:
        yield buf[0] if len(buf) == 1 else _concat(buf)


def _concat(parts):
    try:
        return np.concatenate([np.asarray(p) for p in parts], axis=0)
    except (TypeError, ValueError):  # mixed array types: let NumPy coerce
        return np.vstack([np.asarray(p) for p in parts])


def iter_chunks(X, chunk_size, *, release_pages=True):
    """Iterate over ``X`` as 2-D chunks of ``chunk_size`` rows.

    Parameters
    ----------
    X : ndarray, numpy.memmap or iterable of 2-D array-likes
        The data. An array is sliced into row blocks (views, never copied); an
        iterable (list, generator, iterator) is re-chunked so that every chunk
        but the last has exactly ``chunk_size`` rows.
    chunk_size : int
        Number of rows per chunk, at least 1.
    release_pages : bool, default=True
        For a C-contiguous ``numpy.memmap`` opened with mode ``'r'`` or
        ``'r+'``, release the memory pages of each block from the process once
        the next block is requested, which keeps the resident set size flat
        while streaming a large file. Data are not affected.

    Yields
    ------
    chunk : ndarray of shape (n_rows, n_features)
        ``n_rows == chunk_size`` except possibly for the last chunk. Chunks of
        an array are views into it; chunks of an iterable are views of its
        elements or, where elements had to be joined, fresh arrays.

    Raises
    ------
    ValueError
        If ``chunk_size`` is not a positive integer, if an array is not 2-D, or
        if an element of an iterable is not 2-D or has a different number of
        columns from the elements before it.

    Examples
    --------
    >>> import numpy as np
    >>> from aefast.data import iter_chunks
    >>> [c.shape for c in iter_chunks(np.zeros((5, 2)), 2)]
    [(2, 2), (2, 2), (1, 2)]
    >>> [c.shape for c in iter_chunks(iter([np.zeros((3, 2)), np.zeros((3, 2))]), 4)]
    [(4, 2), (2, 2)]
    """
    chunk_size = _check_chunk_size(chunk_size)
    if is_chunk_iterable(X):
        return _iter_iterable(X, chunk_size)
    if not hasattr(X, "shape") or not hasattr(X, "__getitem__"):
        X = np.asarray(X)
    if len(X.shape) != 2:
        raise ValueError(
            f"Expected a 2-D array of shape (n_samples, n_features), got an array "
            f"with {len(X.shape)} dimension(s) (shape={tuple(X.shape)})."
        )
    return _iter_array(X, chunk_size, release_pages)
