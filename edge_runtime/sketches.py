"""Mergeable sketches of one feature, with portable bytes.

Every sketch follows one protocol: ``update(values) -> self``, ``merge(other) ->
self``, ``to_bytes()`` and ``from_bytes(data)``, and is usable when empty. The
bytes start with a magic tag and a format version; a numeric sketch embeds the
Apache DataSketches KLL serialization, which the Java and C++ sides of
DataSketches (Druid, Spark) read too. Nothing is pickled.

Examples
--------
>>> import numpy as np
>>> from edge_runtime.sketches import NumericSketch
>>> a = NumericSketch().update(np.arange(100, dtype=np.float32))
>>> b = NumericSketch().update(np.array([np.nan, 1000.0], dtype=np.float32))
>>> merged = NumericSketch.from_bytes(a.to_bytes()).merge(b)
>>> merged.count, merged.missing, merged.minimum, merged.maximum
(101, 1, 0.0, 1000.0)
>>> round(merged.mean, 3)
58.911
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Iterable, Mapping
from typing import Any

import datasketches
import numpy as np

from edge_runtime.errors import BundleFormatError

__all__ = ["DEFAULT_K", "CategoricalSketch", "NumericSketch", "sketch_from_bytes"]

DEFAULT_K = 200
_NUMERIC_MAGIC = b"ERNS"
_CATEGORICAL_MAGIC = b"ERCS"
_VERSION = 1
# magic, version, k, count, missing, min, max, mean, m2
_NUMERIC_HEADER = struct.Struct("<4sBHQQdddd")


class NumericSketch:
    """Count, missing, min, max, mean, variance and a KLL quantile sketch of a numeric feature.

    Parameters
    ----------
    k : int
        KLL accuracy parameter: k=200 gives a normalized rank error of about
        1.3% (99% confidence) in a few KB, whatever the stream length.
    """

    __slots__ = ("kll", "count", "missing", "minimum", "maximum", "mean", "m2", "_cache")

    def __init__(self, k: int = DEFAULT_K) -> None:
        self.kll = datasketches.kll_floats_sketch(k)
        self.count = 0  # values seen, NaN excluded
        self.missing = 0  # NaN values
        self.minimum = math.inf
        self.maximum = -math.inf
        self.mean = 0.0
        self.m2 = 0.0  # sum of squared deviations from the mean (Chan et al. merge)
        # Quantile and CDF answers by query: the reference profile is asked the
        # same questions for every window. Cleared by every change.
        self._cache: dict[tuple[str, bytes], np.ndarray] = {}

    @property
    def k(self) -> int:
        """The KLL accuracy parameter."""
        return int(self.kll.k)

    @property
    def variance(self) -> float:
        """Population variance of the values seen (0 when fewer than two)."""
        return self.m2 / self.count if self.count > 1 else 0.0

    @property
    def rank_error(self) -> float:
        """Normalized rank error bound of the quantile sketch (0 while it is exact)."""
        if not self.kll.is_estimation_mode():
            return 0.0
        return float(self.kll.normalized_rank_error(False))

    def update(self, values: Any) -> NumericSketch:
        """Add one value or an array of values; NaN counts as missing."""
        self._cache.clear()
        array = np.array(values, dtype=np.float32, ndmin=1)  # a writable copy: datasketches rejects read-only arrays
        present = array[~np.isnan(array)]
        self.missing += int(array.size - present.size)
        if present.size == 0:
            return self
        self.kll.update(present)
        n = int(present.size)
        batch_mean = float(present.mean(dtype=np.float64))
        batch_m2 = float(((present.astype(np.float64) - batch_mean) ** 2).sum())
        self.add_moments(n, batch_mean, batch_m2, float(present.min()), float(present.max()))
        return self

    def update_present(self, values: np.ndarray, mean: float, m2: float, low: float, high: float) -> NumericSketch:
        """Add values known to hold no NaN, with their moments computed by the caller.

        The fast path of :meth:`Profile.update_matrix`, which computes the
        moments of all columns of a block in one vectorized pass. ``values``
        must be a writable contiguous float32 array.
        """
        self._cache.clear()
        self.kll.update(values)
        self.add_moments(int(values.size), mean, m2, low, high)
        return self

    def merge(self, other: NumericSketch) -> NumericSketch:
        """Fold another sketch of the same feature into this one."""
        self._cache.clear()
        self.kll.merge(other.kll)
        self.missing += other.missing
        if other.count:
            self.add_moments(other.count, other.mean, other.m2, other.minimum, other.maximum)
        return self

    def add_moments(self, n: int, mean: float, m2: float, low: float, high: float) -> None:
        """Fold in the count, mean, squared deviations and range of ``n`` values (Chan et al.)."""
        if n == 0:
            return
        total = self.count + n
        delta = mean - self.mean
        self.mean += delta * n / total
        self.m2 += m2 + delta * delta * self.count * n / total
        self.count = total
        self.minimum = min(self.minimum, low)
        self.maximum = max(self.maximum, high)

    def cdf(self, points: Iterable[float], *, inclusive: bool = False) -> np.ndarray:
        """Estimated share of values below (or at, with ``inclusive``) each point; empty → zeros."""
        query = np.asarray(points if isinstance(points, np.ndarray) else list(points), dtype=np.float64)
        if self.count == 0:
            return np.zeros(query.size)
        key = ("cdf+" if inclusive else "cdf", query.tobytes())
        if key not in self._cache:
            self._cache[key] = np.asarray(self.kll.get_cdf(query.tolist(), inclusive)[:-1])
        return self._cache[key]

    def quantiles(self, ranks: Iterable[float]) -> np.ndarray:
        """Estimated values at the given normalized ranks; empty → NaN."""
        query = np.asarray(ranks if isinstance(ranks, np.ndarray) else list(ranks), dtype=np.float64)
        if self.count == 0:
            return np.full(query.size, np.nan)
        key = ("quantiles", query.tobytes())
        if key not in self._cache:
            self._cache[key] = np.asarray(self.kll.get_quantiles(query.tolist()), dtype=np.float64)
        return self._cache[key]

    def summary(self) -> dict[str, Any]:
        """JSON-ready statistics."""
        out: dict[str, Any] = {"count": self.count, "missing": self.missing}
        if self.count:
            out.update(min=self.minimum, max=self.maximum, mean=self.mean, std=math.sqrt(self.variance))
        return out

    def to_bytes(self) -> bytes:
        """Portable bytes: a versioned header, then the DataSketches KLL serialization."""
        header = _NUMERIC_HEADER.pack(_NUMERIC_MAGIC, _VERSION, self.k, self.count, self.missing,
                                      self.minimum, self.maximum, self.mean, self.m2)
        return header + bytes(self.kll.serialize())

    @classmethod
    def from_bytes(cls, data: bytes) -> NumericSketch:
        """Read bytes written by :meth:`to_bytes`."""
        try:
            magic, version, k, count, missing, low, high, mean, m2 = _NUMERIC_HEADER.unpack_from(data)
        except struct.error as exc:
            raise BundleFormatError(f"numeric sketch bytes are truncated ({len(data)} bytes)") from exc
        if magic != _NUMERIC_MAGIC:
            raise BundleFormatError(f"not a numeric sketch (tag {magic!r})")
        if version > _VERSION:
            raise BundleFormatError(f"numeric sketch format {version} is newer than this edge-runtime reads")
        sketch = cls(k)
        try:
            sketch.kll = datasketches.kll_floats_sketch.deserialize(data[_NUMERIC_HEADER.size:])
        except Exception as exc:  # datasketches raises RuntimeError/ValueError variants
            raise BundleFormatError(f"numeric sketch has a corrupt KLL body: {exc}") from exc
        sketch.count, sketch.missing = count, missing
        sketch.minimum, sketch.maximum, sketch.mean, sketch.m2 = low, high, mean, m2
        return sketch

    def __repr__(self) -> str:
        return f"NumericSketch(count={self.count}, missing={self.missing}, k={self.k})"


class CategoricalSketch:
    """Exact counts per category, bounded to ``max_categories`` plus an ``other`` bucket.

    Parameters
    ----------
    max_categories : int
        Distinct categories kept by name; later new ones are counted in ``other``.
        Counts add exactly when merged.

    Examples
    --------
    >>> s = CategoricalSketch().update(["a", "b", "a", None])
    >>> s.counts, s.missing, s.total
    ({'a': 2, 'b': 1}, 1, 3)
    """

    __slots__ = ("counts", "other", "missing", "max_categories")

    def __init__(self, max_categories: int = 1000) -> None:
        self.counts: dict[str, int] = {}
        self.other = 0
        self.missing = 0
        self.max_categories = max_categories

    @property
    def total(self) -> int:
        """Values seen, missing excluded."""
        return sum(self.counts.values()) + self.other

    def update(self, values: Any) -> CategoricalSketch:
        """Add one value or an iterable of values; None and NaN count as missing."""
        if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
            values = [values]
        tally: dict[str, int] = {}
        for value in values:
            if value is None or (isinstance(value, float) and math.isnan(value)):
                self.missing += 1
            else:
                key = str(value)
                tally[key] = tally.get(key, 0) + 1
        return self._add(tally, 0)

    def update_counts(self, counts: Mapping[str, int]) -> CategoricalSketch:
        """Add precomputed counts (e.g. from ``numpy.unique``)."""
        return self._add(counts, 0)

    def merge(self, other: CategoricalSketch) -> CategoricalSketch:
        """Fold another sketch into this one."""
        self.missing += other.missing
        return self._add(other.counts, other.other)

    def _add(self, counts: Mapping[str, int], other: int) -> CategoricalSketch:
        for key, n in counts.items():
            if key in self.counts:
                self.counts[key] += int(n)
            elif len(self.counts) < self.max_categories:
                self.counts[key] = int(n)
            else:
                self.other += int(n)
        self.other += other
        return self

    def summary(self) -> dict[str, Any]:
        """JSON-ready counts."""
        return {"count": self.total, "missing": self.missing, "counts": dict(self.counts), "other": self.other}

    def to_bytes(self) -> bytes:
        """Portable bytes: a tag, a version byte, then UTF-8 JSON."""
        body = json.dumps({"counts": self.counts, "other": self.other, "missing": self.missing,
                           "max_categories": self.max_categories}, sort_keys=True)
        return _CATEGORICAL_MAGIC + bytes([_VERSION]) + body.encode("utf-8")

    @classmethod
    def from_bytes(cls, data: bytes) -> CategoricalSketch:
        """Read bytes written by :meth:`to_bytes`."""
        if data[:4] != _CATEGORICAL_MAGIC or len(data) < 5:
            raise BundleFormatError(f"not a categorical sketch (tag {data[:4]!r})")
        if data[4] > _VERSION:
            raise BundleFormatError(f"categorical sketch format {data[4]} is newer than this edge-runtime reads")
        try:
            body = json.loads(data[5:].decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise BundleFormatError(f"categorical sketch has a corrupt body: {exc}") from exc
        sketch = cls(int(body.get("max_categories", 1000)))
        sketch.counts = {str(k): int(v) for k, v in body["counts"].items()}
        sketch.other, sketch.missing = int(body["other"]), int(body["missing"])
        return sketch

    def __repr__(self) -> str:
        return f"CategoricalSketch(categories={len(self.counts)}, total={self.total}, missing={self.missing})"


def sketch_from_bytes(data: bytes) -> NumericSketch | CategoricalSketch:
    """Read either kind of sketch from its bytes, by its tag."""
    if data[:4] == _NUMERIC_MAGIC:
        return NumericSketch.from_bytes(data)
    if data[:4] == _CATEGORICAL_MAGIC:
        return CategoricalSketch.from_bytes(data)
    raise BundleFormatError(f"unknown sketch tag {data[:4]!r}")
