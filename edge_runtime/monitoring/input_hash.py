"""A 64-bit hash of each input row, so repeated inputs can be spotted in the log without storing them.

The same row hashes the same alone or in any batch, and from any layout path.

Examples
--------
>>> import numpy as np
>>> from edge_runtime.monitoring.input_hash import hash_matrix, hash_values
>>> rows = np.array([[1.0, 2.0], [3.0, 4.0], [1.0, 2.0]], dtype=np.float32)
>>> h = hash_matrix(rows)
>>> bool(h[0] == h[2]), bool(h[0] == h[1]), bool(hash_matrix(rows[:1])[0] == h[0])
(True, False, True)
>>> hash_values([1, "paris"]) == hash_values([1, "paris"])
True
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["hash_matrix", "hash_values"]

# Input hash of a float32 row: its 16-bit halves times fixed odd multipliers
# below 2^21, summed in float64 by one matrix product. Every product and sum is
# an integer below 2^53, so the result is exact whatever order BLAS adds in: the
# same row hashes the same alone or in any batch. Two such sums, mixed, make 64 bits.
_HASH_MULTIPLIERS = (np.random.default_rng(20261126).integers(1, 2**20, size=(8192, 2)) * 2 + 1).astype(np.float64)


_FIRST = np.ascontiguousarray(_HASH_MULTIPLIERS[:, 0])
_SECOND = np.ascontiguousarray(_HASH_MULTIPLIERS[:, 1])


def hash_matrix(rows: np.ndarray) -> np.ndarray:
    """The hash of each float32 row (signed int64); rows of more than 4,096 values are hashed as JSON."""
    if 2 * rows.shape[1] > _HASH_MULTIPLIERS.shape[0]:
        return np.array([hash_values(row.tolist()) for row in rows], dtype=np.int64)
    halves = np.ascontiguousarray(rows, dtype=np.float32).view(np.uint16).astype(np.float64)
    width = halves.shape[1]
    # Two matrix-vector products: BLAS took twice as long for one product with two
    # columns (and its threads spin on a second core). The sums are the same.
    digest = (halves @ _FIRST[:width]).astype(np.uint64)
    second = (halves @ _SECOND[:width]).astype(np.uint64)
    # In place, and without np.errstate: array integer arithmetic wraps silently (only
    # scalars warn), and each temporary or context costs a few µs a block.
    digest <<= np.uint64(14)
    digest ^= second
    np.right_shift(digest, np.uint64(31), out=second)
    digest ^= second
    digest *= np.uint64(0xBF58476D1CE4E5B9)
    np.right_shift(digest, np.uint64(29), out=second)
    digest ^= second
    return digest.view(np.int64)


def hash_values(values: Sequence[Any]) -> int:
    """The hash of one row of plain values (columns layout), as a signed 64-bit int."""
    return int.from_bytes(hashlib.blake2b(json.dumps(list(values)).encode(), digest_size=8).digest(), "little",
                          signed=True)
