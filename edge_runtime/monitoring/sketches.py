"""Mergeable sketches of one feature, with portable bytes.

Every sketch follows one protocol: ``update(values) -> self``, ``merge(other) ->
self``, ``to_bytes()`` and ``from_bytes(data)``, and is usable when empty. The
bytes start with a magic tag and a format version; a numeric sketch embeds the
Apache DataSketches KLL serialization, which the Java and C++ sides of
DataSketches (Druid, Spark) read too. Nothing is pickled.

A numeric sketch may *thin* its input (``stride`` > 1): each block of values is
sorted and every ``stride``-th value, from a random offset, goes to the KLL
sketch. Within a sorted block that is a stratified sample, unbiased for every
rank, so the thinned sketch follows the block far more closely than a random
sample of the same size; its extra rank error is tracked (``thin_var``) and
counted in :attr:`NumericSketch.rank_error`. Count, missing, min, max, mean
and variance stay exact.

Examples
--------
>>> import numpy as np
>>> from edge_runtime.monitoring.sketches import NumericSketch
>>> a = NumericSketch().update(np.arange(100, dtype=np.float32))
>>> b = NumericSketch().update(np.array([np.nan, 1000.0], dtype=np.float32))
>>> merged = NumericSketch.from_bytes(a.to_bytes()).merge(b)
>>> merged.count, merged.missing, merged.minimum, merged.maximum
(101, 1, 0.0, 1000.0)
>>> round(merged.mean, 3)
58.911
"""

from __future__ import annotations

import functools
import json
import math
import struct
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import datasketches
import numpy as np

from edge_runtime.errors import BundleFormatError

__all__ = ["DEFAULT_K", "REFERENCE_K", "SORT_CHUNK", "CategoricalSketch", "NumericSketch", "add_thinned_blocks",
           "block_moments", "empty_sketch", "order_keys", "sketch_from_bytes", "thin_block"]

DEFAULT_K = 200
# The reference profile is built once, at export, and compared with every
# window: at k=1000 its rank error (0.28% at 99%, ~10 KB per feature at 50,000
# rows) no longer limits how small a shift a window can prove.
REFERENCE_K = 1000
# KLL's normalized_rank_error is an a-priori bound at 99% over all ranks and
# stream lengths. Its per-point standard deviation, measured from 250 to
# 200,000 values at k=200 and 400, stayed under a fifth of it: the drift
# thresholds take a quarter.
_KLL_SD_PER_BOUND = 0.25
# KLL serialization (Apache DataSketches, all languages): 8 bytes of preamble,
# then for a sketch of two or more items n, min_k and the level count, the
# level offsets, min and max, then the retained items level by level.
_KLL_FULL = struct.Struct("<QHBx")
_KLL_EMPTY, _KLL_SINGLE = 1, 4  # flag bits
_NUMERIC_MAGIC = b"ERNS"
_CATEGORICAL_MAGIC = b"ERCS"
_VERSION = 1  # categorical sketches
_NUMERIC_VERSION = 2  # 2 added stride and thin_var
# magic, version, k, count, missing, min, max, mean, m2
_NUMERIC_HEADER_V1 = struct.Struct("<4sBHQQdddd")
# ... then stride and thin_var
_NUMERIC_HEADER = struct.Struct("<4sBHQQddddHd")
# The thinning's rank error is counted as this many standard deviations of its
# count error, doubled because the sketch divides by its own (also thinned)
# total. In simulation (blocks of 64 to 1,024 rows, strides 8 and 16) this bound
# stayed above the 99th percentile of the largest CDF error over all points.
_THIN_ERROR_SCALE = 2 * 2.576
_OFFSETS = np.random.default_rng()  # thinning offsets: independent of the data is all they need
# Values sorted (and thinned) together. The thinning's error falls with the square
# root of the chunk (stride^2 / 4 per chunk, whatever its length), and numpy's
# sort took only ~10% more per value for 1,024 float32 values than for 512 here.
SORT_CHUNK = 1024


class NumericSketch:
    """Count, missing, min, max, mean, variance and a KLL quantile sketch of a numeric feature.

    Parameters
    ----------
    k : int
        KLL accuracy parameter: k=200 gives a normalized rank error of about
        1.3% (99% confidence) in a few KB, whatever the stream length.
    stride : int
        Thinning: the KLL sketch takes every ``stride``-th value of each sorted
        block (1: every value), so each KLL value stands for ``stride`` rows.
        Sketches of different strides merge at the greatest common divisor of
        their strides (:meth:`merge`).

    Examples
    --------
    >>> import numpy as np
    >>> values = np.random.default_rng(0).normal(size=4096).astype(np.float32)
    >>> thinned = NumericSketch(stride=8).update(values)
    >>> thinned.count, thinned.kll.n, round(thinned.mean, 4) == round(float(values.mean()), 4)
    (4096, 512, True)
    >>> 0.005 < thinned.rank_error < 0.03  # KLL's error plus the thinning's
    True
    """

    __slots__ = ("kll", "stride", "thin_var", "count", "missing", "minimum", "maximum", "mean", "m2", "_cache",
                 "__weakref__")

    def __init__(self, k: int = DEFAULT_K, stride: int = 1) -> None:
        if not isinstance(stride, int) or not 1 <= stride <= 65535:
            raise ValueError(f"The 'stride' parameter of NumericSketch must be an int in [1, 65535]. "
                             f"Got {stride!r} instead.")
        self.kll = datasketches.kll_floats_sketch(k)
        self.stride = stride
        # Variance of the count error beyond this KLL sketch's own, rows squared: the
        # thinning's (adds up over blocks) and that of the sketches merged in (see merge).
        self.thin_var = 0.0
        self.count = 0  # values seen, NaN excluded
        self.missing = 0  # NaN values
        self.minimum = math.inf
        self.maximum = -math.inf
        self.mean = 0.0
        self.m2 = 0.0  # sum of squared deviations from the mean (Chan et al. merge)
        # Quantile and CDF answers by query: the reference profile is asked the
        # same questions for every window. Cleared by every change.
        self._cache: dict[tuple[str, bytes], Any] = {}

    @property
    def k(self) -> int:
        """The KLL accuracy parameter."""
        return int(self.kll.k)

    @property
    def variance(self) -> float:
        """Population variance of the values seen (0 when fewer than two)."""
        return self.m2 / self.count if self.count > 1 else 0.0

    @property
    def rank_sd(self) -> float:
        """Standard deviation of the sketch's error at one CDF point, in rank units: KLL's
        (a quarter of its 99% bound at ``k``; 0 while exact) and the rest (``thin_var``: the
        thinning's, and the errors of sketches merged in), added as variances.

        The drift thresholds count it as sampling noise (:mod:`edge_runtime.monitoring.drift`).
        """
        kll = _kll_bound(self.kll.k) * _KLL_SD_PER_BOUND if self.kll.is_estimation_mode() else 0.0
        thin = 2.0 * math.sqrt(self.thin_var) / self.count if self.thin_var and self.count else 0.0
        return math.sqrt(kll * kll + thin * thin)

    def kll_bytes(self) -> bytes:
        """The DataSketches serialization of the KLL sketch, kept until the next change."""
        key = ("bytes", b"")
        if key not in self._cache:
            self._cache[key] = bytes(self.kll.serialize())
        data: bytes = self._cache[key]
        return data

    def retained(self) -> tuple[np.ndarray, list[int]]:
        """The KLL sketch's retained values (float32, unsorted) and how many sit at each level,
        read from its bytes: a value at level ``h`` stands for ``2**h`` values.

        The sketch's CDF at ``x`` is the weight of the values ``<= x`` over the
        total: computed this way for many points and features at once in numpy,
        it costs a fraction of one ``get_cdf`` call per feature.

        >>> import numpy as np
        >>> sketch = NumericSketch().update(np.arange(1000, dtype=np.float32))
        >>> items, sizes = sketch.retained()
        >>> weights = np.repeat(2.0 ** np.arange(len(sizes)), sizes)
        >>> int(weights.sum()), bool(abs(weights[items <= 249].sum() / 1000 - sketch.cdf([249], inclusive=True)[0]) < 1e-12)
        (1000, True)
        """
        data = self.kll_bytes()
        flags = data[3]
        if flags & _KLL_EMPTY:
            return np.zeros(0, dtype=np.float32), []
        if flags & _KLL_SINGLE:
            return np.frombuffer(data, dtype=np.float32, count=1, offset=8), [1]
        _, _, levels_count = _KLL_FULL.unpack_from(data, 8)
        start = 8 + _KLL_FULL.size
        levels = struct.unpack_from(f"<{levels_count}I", data, start)
        items = np.frombuffer(data, dtype=np.float32, offset=start + 4 * levels_count + 8)  # after min, max
        bounds = [*levels, levels[0] + items.size]
        return items, [bounds[h + 1] - bounds[h] for h in range(levels_count)]

    @staticmethod
    def retained_many(sketches: Sequence[NumericSketch]
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`retained` of many sketches at once: every sketch's values one after another
        (float32), each value's weight (float64, ``2**level``), how many values each sketch has
        and what they weigh in all (its KLL count, float64).

        The sketches' bytes are joined and the values gathered by one numpy
        index, kept with the weights for the next call whose sketches have the
        same headers and lengths (a window close reads some 30 sketches of the
        same counts each time; :meth:`retained` one by one cost ~3.5 µs each).
        The weights and counts are shared with that next call: not to be changed.

        >>> import numpy as np
        >>> a = NumericSketch().update(np.arange(1000, dtype=np.float32))
        >>> b = NumericSketch().update(np.arange(5, dtype=np.float32))
        >>> items, weights, sizes, totals = NumericSketch.retained_many([a, b])
        >>> sizes.tolist() == [a.kll.num_retained, 5]
        True
        >>> float(weights[:sizes[0]].sum()), float(weights[sizes[0]:].sum()), totals.tolist()
        (1000.0, 5.0, [1000.0, 5.0])
        """
        datas = [sketch.kll_bytes() for sketch in sketches]
        if not datas:
            return np.zeros(0, dtype=np.float32), np.zeros(0), np.zeros(0, dtype=np.int64), np.zeros(0)
        # Where the values sit and what they weigh follows from the headers and lengths alone,
        # which repeat window after window (KLL's levels depend on the count, not the values).
        key = (b"".join([data if data[3] & (_KLL_EMPTY | _KLL_SINGLE) else data[:20 + 4 * data[18]]
                         for data in datas]), tuple(map(len, datas)))
        layout = _RETAINED.get(key)
        if layout is None:
            if len(_RETAINED) > 8:
                _RETAINED.clear()
            layout = _RETAINED[key] = _retained_layout(sketches, datas)
        where, weights, sizes, totals = layout
        values = np.frombuffer(b"".join(datas), dtype=np.float32)
        return values[where], weights, sizes, totals

    @property
    def rank_error(self) -> float:
        """Normalized rank error bound of the quantile sketch: KLL's at ``k`` (0 while exact) plus that of
        ``thin_var`` (the thinning's, and the errors of sketches merged in)."""
        error = _kll_bound(self.k) if self.kll.is_estimation_mode() else 0.0
        if self.thin_var and self.count:
            error += _THIN_ERROR_SCALE * math.sqrt(self.thin_var) / self.count
        return error

    def update(self, values: Any) -> NumericSketch:
        """Add one value or an array of values (one block); NaN counts as missing."""
        # A writable copy: datasketches rejects read-only arrays.
        array = np.array(values, dtype=np.float32, ndmin=1)
        if np.isnan(array).any():
            present = array[~np.isnan(array)]
            self.missing += int(array.size - present.size)
        else:
            present = array
        n = int(present.size)
        if n == 0:
            return self
        kept, thin_var, lows, highs = thin_block(present.reshape(1, n), self.stride)
        means, m2s = block_moments(present.reshape(1, n))
        return self.add_thinned(kept[0], n=n, thin_var=thin_var, mean=float(means[0]), m2=float(m2s[0]),
                                low=float(lows[0]), high=float(highs[0]))

    def add_thinned(self, kept: np.ndarray, *, n: int, thin_var: float, mean: float, m2: float, low: float,
                    high: float) -> NumericSketch:
        """Add a block already thinned by the caller: ``kept`` (float32, contiguous) stands for ``n`` values.

        The fast path of :meth:`Profile.update_matrix`, which sorts and thins all
        columns of a block at once; ``thin_var`` is the thinning's count-error
        variance for the block (0 when ``kept`` is every value).
        """
        self._cache.clear()
        if kept.size:
            self.kll.update(kept)
        self.thin_var += thin_var
        self.add_moments(n, mean, m2, low, high)
        return self

    def merge(self, other: NumericSketch) -> NumericSketch:
        """Fold another sketch of the same feature into this one, whatever the two strides and ``k``.

        **Strides.** A KLL value of a sketch thinned by ``stride`` stands for
        ``stride`` rows times its level's weight. Two sketches of different
        strides merge at the greatest common divisor ``g`` of their strides:
        each sketch whose stride ``s`` differs has its retained values
        re-weighted by the integer ``s / g``, written in binary as one copy of
        a value per set bit, at its level plus that bit's position, so the
        weights stay exact. The copies are laid out with this sketch's ``k``;
        a level they overfill is compacted as KLL compacts, and that
        compaction's count-error variance is added to ``thin_var`` (a
        power-of-two ratio only shifts levels, and a larger ``k`` than the
        other's leaves room: nothing is added). The re-weighted sketch is a KLL
        serialization in DataSketches' own format, so the bytes stay portable.

        **Errors carried along.** ``thin_var`` holds the count-error variance
        (rows squared) beyond this KLL sketch's own compactions: the thinning's,
        and the other sketch's KLL error, which is independent of this one's
        (its own coin flips) and enters with its variance, ``(rank_sd * count)**2``. So a
        sketch of large ``k`` that merges many small ones (a fleet's time
        bucket) states the error it has: the small sketches' errors average
        out, where KLL's own bound would report the smallest ``k``'s (which is
        why :attr:`rank_sd` reads KLL's error from ``k``, not from the smallest
        ``k`` merged). Merging into an empty sketch of the same ``k`` is a copy
        and adds nothing.

        An empty sketch (no rows at all) merges into any and takes the other's stride.

        >>> import numpy as np
        >>> values = np.arange(4000, dtype=np.float32)
        >>> a, b = NumericSketch(stride=4).update(values), NumericSketch(stride=6).update(values)
        >>> merged = NumericSketch.from_bytes(a.to_bytes()).merge(b)
        >>> merged.count, merged.stride, merged.kll.n == a.kll.n * 2 + b.kll.n * 3  # weights in rows / 2
        (8000, 2, True)
        """
        if other.count == 0 and other.missing == 0 and other.kll.is_empty():
            return self
        blank = self.count == 0 and self.missing == 0 and self.kll.is_empty()
        if blank:
            self.stride = other.stride
        if not (blank and self.k == other.k):
            # A quarter: rank_sd doubles thin_var's deviation, as a thinned total moves with
            # its counts, where a KLL sketch's total is exact.
            self.thin_var += other.kll_count_var() / 4.0
        common = math.gcd(self.stride, other.stride)
        if self.stride != common:
            self.kll, added = _reweighted_kll(self, self.stride // common, self.k)
            self.thin_var += added * common * common  # KLL weights to rows: each weighs ``common`` rows
            self.stride = common
        if other.stride == common:
            self.kll.merge(other.kll)
        else:
            reweighted, added = _reweighted_kll(other, other.stride // common, self.k)
            self.kll.merge(reweighted)
            self.thin_var += added * common * common
        self._cache.clear()  # after the re-weighting, which reads this sketch's bytes
        self.thin_var += other.thin_var
        self.missing += other.missing
        if other.count:
            self.add_moments(other.count, other.mean, other.m2, other.minimum, other.maximum)
        return self

    def kll_count_var(self) -> float:
        """Variance of the KLL sketch's own count error at one point, in rows squared:
        ``(kll_sd * count)**2``, with ``kll_sd`` KLL's part of :attr:`rank_sd` (0 while exact)."""
        if not self.kll.is_estimation_mode():
            return 0.0
        sd = _kll_bound(self.k) * _KLL_SD_PER_BOUND * self.count
        return sd * sd

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
        """Estimated share of values below (or at, with ``inclusive``) each point; empty → zeros.

        A thinned sketch of a few rows may have kept no value yet: it answers as empty.
        """
        query = np.asarray(points if isinstance(points, np.ndarray) else list(points), dtype=np.float64)
        if self.kll.is_empty():
            return np.zeros(query.size)
        key = ("cdf+" if inclusive else "cdf", query.tobytes())
        if key not in self._cache:
            self._cache[key] = np.asarray(self.kll.get_cdf(query.tolist(), inclusive)[:-1])
        cdf: np.ndarray = self._cache[key]
        return cdf

    def quantiles(self, ranks: Iterable[float]) -> np.ndarray:
        """Estimated values at the given normalized ranks; empty (or nothing kept yet) → NaN."""
        query = np.asarray(ranks if isinstance(ranks, np.ndarray) else list(ranks), dtype=np.float64)
        if self.kll.is_empty():
            return np.full(query.size, np.nan)
        key = ("quantiles", query.tobytes())
        if key not in self._cache:
            self._cache[key] = np.asarray(self.kll.get_quantiles(query.tolist()), dtype=np.float64)
        values: np.ndarray = self._cache[key]
        return values

    def summary(self) -> dict[str, Any]:
        """JSON-ready statistics."""
        out: dict[str, Any] = {"count": self.count, "missing": self.missing}
        if self.count:
            out.update(min=self.minimum, max=self.maximum, mean=self.mean, std=math.sqrt(self.variance))
        return out

    def to_bytes(self) -> bytes:
        """Portable bytes: a versioned header, then the DataSketches KLL serialization."""
        # The KLL bytes are cached: a window close reads them for its CDFs, then stores them.
        return _NUMERIC_HEADER.pack(_NUMERIC_MAGIC, _NUMERIC_VERSION, self.kll.k, self.count, self.missing,
                                    self.minimum, self.maximum, self.mean, self.m2, self.stride,
                                    self.thin_var) + self.kll_bytes()

    @classmethod
    def from_bytes(cls, data: bytes) -> NumericSketch:
        """Read bytes written by :meth:`to_bytes` (this format or the first one, which did not thin)."""
        try:
            magic, version = struct.unpack_from("<4sB", data)
            layout = _NUMERIC_HEADER_V1 if version == 1 else _NUMERIC_HEADER
            magic, version, k, count, missing, low, high, mean, m2, *thinning = layout.unpack_from(data)
        except struct.error as exc:
            raise BundleFormatError(f"numeric sketch bytes are truncated ({len(data)} bytes)") from exc
        if magic != _NUMERIC_MAGIC:
            raise BundleFormatError(f"not a numeric sketch (tag {magic!r})")
        if version > _NUMERIC_VERSION:
            raise BundleFormatError(f"numeric sketch format {version} is newer than this edge-runtime reads")
        stride, thin_var = thinning or (1, 0.0)
        if not 1 <= stride:
            raise BundleFormatError(f"numeric sketch has an invalid stride {stride}")
        try:
            kll = datasketches.kll_floats_sketch.deserialize(data[layout.size:])
        except Exception as exc:  # datasketches raises RuntimeError/ValueError variants
            raise BundleFormatError(f"numeric sketch has a corrupt KLL body: {exc}") from exc
        # Every field set here rather than through __init__, whose empty KLL sketch would be
        # thrown away: a collector reads some 32 of these for each window it receives.
        sketch = cls.__new__(cls)
        sketch.kll, sketch.stride, sketch.thin_var = kll, stride, thin_var
        sketch.count, sketch.missing = count, missing
        sketch.minimum, sketch.maximum, sketch.mean, sketch.m2 = low, high, mean, m2
        sketch._cache = {}
        return sketch

    def __repr__(self) -> str:
        thinning = f", stride={self.stride}" if self.stride > 1 else ""
        return f"NumericSketch(count={self.count}, missing={self.missing}, k={self.k}{thinning})"


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


# KLL serialization of a sketch of two or more items: preamble ints (5), serial
# version (1), family (15, KLL), flags, k, m (the minimum level width, 8).
_KLL_PREAMBLE = struct.Struct("<BBBBHBx")
_KLL_MIN_WIDTH = 8


def _kll_level_capacity(k: int, depth: int) -> int:
    """KLL's capacity of a level ``depth`` levels below the top: about ``k (2/3)^depth``, rounded as
    DataSketches rounds it (``kll_helper::int_cap_aux``), and at least :data:`_KLL_MIN_WIDTH`."""
    def scaled(k: int, depth: int) -> int:
        return int((((2 * k) << depth) // 3 ** depth + 1) >> 1)
    half = depth // 2
    capacity = scaled(k, depth) if depth <= 30 else scaled(scaled(k, half), depth - half)
    return max(_KLL_MIN_WIDTH, capacity)


@functools.lru_cache(maxsize=64)  # asked for every sketch's rank_sd and merge: a handful of k per process
def _kll_bound(k: int) -> float:
    """KLL's normalized rank error bound (99%, one-sided) at ``k``."""
    return float(datasketches.kll_floats_sketch.get_normalized_rank_error(k, False))


# retained_many's layouts: the positions of the values in the joined bytes, their weights and counts.
_RETAINED: dict[tuple[bytes, tuple[int, ...]], tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = {}


def _retained_layout(sketches: Sequence[NumericSketch], datas: Sequence[bytes]
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """For :meth:`NumericSketch.retained_many`: where each sketch's values sit in its joined bytes (as
    float32 positions), each value's weight, how many values each sketch has and their total weight
    (the KLL count, which the headers hold)."""
    parts = [sketch.retained() for sketch in sketches]
    sizes = np.array([len(values) for values, _ in parts], dtype=np.int64)
    weights = np.repeat(np.array([float(1 << h) for _, levels in parts for h in range(len(levels))]),
                        np.array([n for _, levels in parts for n in levels], dtype=np.int64))
    # A sketch's values run to the end of its bytes; an empty sketch has none.
    ends = np.cumsum([len(data) for data in datas]) // 4
    if any(len(data) % 4 for data in datas):  # never for DataSketches' layout: read them by copy
        raise ValueError("KLL bytes of a length that is not a multiple of 4")
    where = np.concatenate([np.arange(end - n, end) for end, n in zip(ends.tolist(), sizes.tolist())])
    totals = np.array([sketch.kll.n for sketch in sketches], dtype=np.float64)
    return where.astype(np.intp), weights, sizes, totals


def _reweighted_kll(sketch: NumericSketch, factor: int, k: int) -> tuple[datasketches.kll_floats_sketch, float]:
    """A copy of ``sketch``'s KLL sketch in which every value weighs ``factor`` times as much, laid out
    with accuracy parameter ``k``, and the variance (in squared KLL weights) of the count error it took
    to fit.

    A value at level ``h`` weighs ``2**h``; ``factor`` in binary puts one copy
    of it at level ``h + b`` for each set bit ``b``, so the new weights are
    exact. The copies must fit in the capacity DataSketches computes from ``k``
    and the level count (level ``h`` about ``k (2/3)^depth``, summed): while
    they do not, the lowest level at or over its capacity is compacted as KLL
    compacts, keeping every other value of the sorted level (from a random
    offset) at twice its weight. At any point that moves the count by ``0`` or
    ``±2**h``, a variance of at most ``4**h``, which is returned so that the
    caller counts it with the thinning's. A power-of-two factor only shifts
    levels and never compacts, nor does a larger ``k`` than the sketch's
    while there is room.

    The result is a KLL serialization in DataSketches' own format: levels above
    0 sorted, level offsets counted from the bottom of a buffer of the capacity
    DataSketches computes from ``k`` and the level count.
    """
    if sketch.kll.is_empty():
        return datasketches.kll_floats_sketch(k), 0.0
    items, sizes = sketch.retained()
    bits = [b for b in range(factor.bit_length()) if factor >> b & 1]
    parts: list[list[np.ndarray]] = [[] for _ in range(len(sizes) + bits[-1])]
    start = 0
    for h, size in enumerate(sizes):
        for b in bits:
            parts[h + b].append(items[start:start + size])
        start += size
    runs = [np.concatenate(level) if level else np.zeros(0, dtype=np.float32) for level in parts]
    for run in runs[1:]:
        run.sort()
    added_var = 0.0
    while True:
        capacities = [_kll_level_capacity(k, len(runs) - 1 - h) for h in range(len(runs))]
        if sum(run.size for run in runs) <= sum(capacities):
            break
        # As KLL compacts when full: the lowest level at or over its capacity.
        h = next(h for h, (run, capacity) in enumerate(zip(runs, capacities)) if run.size >= capacity)
        run = np.sort(runs[h])
        odd = run.size % 2  # KLL leaves the odd value out at its level
        runs[h] = run[:odd]
        promoted = run[odd + int(_OFFSETS.integers(2))::2]
        added_var += float(4 ** h)
        if h + 1 == len(runs):
            runs.append(promoted)
        else:
            runs[h + 1] = np.sort(np.concatenate((runs[h + 1], promoted)))
    levels_count = len(runs)
    retained = sum(run.size for run in runs)
    capacity = sum(_kll_level_capacity(k, levels_count - 1 - h) for h in range(levels_count))
    offsets = np.cumsum([capacity - retained] + [run.size for run in runs[:-1]]).tolist()
    n = sum(run.size << h for h, run in enumerate(runs))
    data = sketch.kll_bytes()
    # The smallest k among the sketches merged so far sets the error bound: kept as it was.
    min_k = _KLL_FULL.unpack_from(data, 8)[1] if not data[3] & (_KLL_EMPTY | _KLL_SINGLE) else sketch.k
    min_k = min(min_k, k)
    body = b"".join((_KLL_PREAMBLE.pack(5, 1, 15, 0, k, _KLL_MIN_WIDTH), _KLL_FULL.pack(n, min_k, levels_count),
                     struct.pack(f"<{levels_count}I", *offsets),
                     struct.pack("<ff", sketch.kll.get_min_value(), sketch.kll.get_max_value()),
                     *(run.astype(np.float32).tobytes() for run in runs)))
    return datasketches.kll_floats_sketch.deserialize(body), added_var


def thin_block(columns: np.ndarray, stride: int) -> tuple[np.ndarray, float, np.ndarray, np.ndarray]:
    """Thin a block of NaN-free values, one row per feature: ``(kept, thin_var, lows, highs)``.

    Each row of ``columns`` (float32, C order) is sorted in place in chunks of
    :data:`SORT_CHUNK` values, each chunk a thinning block of its own, and
    every ``stride``-th value from a random offset per chunk is kept.
    ``thin_var`` is the count-error variance the thinning adds to any CDF
    point: a Bernoulli step of variance ``r (stride - r) <= stride^2 / 4`` per
    chunk. At stride 1 nothing is sorted and ``kept`` is ``columns``.

    Examples
    --------
    >>> block = np.arange(2048, dtype=np.float32)[::-1].reshape(1, -1).copy()
    >>> kept, thin_var, lows, highs = thin_block(block, 8)
    >>> kept.shape, thin_var, lows.tolist(), highs.tolist()
    ((1, 256), 32.0, [0.0], [2047.0])
    """
    n = columns.shape[1]
    if stride == 1:
        return columns, 0.0, columns.min(axis=1), columns.max(axis=1)
    starts = range(0, n, SORT_CHUNK)
    for a in starts:
        columns[:, a:a + SORT_CHUNK].sort(axis=1)
    offsets = _OFFSETS.integers(stride, size=len(starts))
    kept = np.concatenate([columns[:, a + o:a + SORT_CHUNK:stride] for a, o in zip(starts, offsets)], axis=1)
    thin_var = sum(min(stride * stride / 4.0, float(min(SORT_CHUNK, n - a) * stride)) for a in starts)
    lasts = np.minimum(np.arange(SORT_CHUNK - 1, n + SORT_CHUNK - 1, SORT_CHUNK), n - 1)
    return kept, thin_var, columns[:, ::SORT_CHUNK].min(axis=1), columns[:, lasts].max(axis=1)


def add_thinned_blocks(sketches: Sequence[NumericSketch], kept: np.ndarray, *, n: int, thin_var: float,
                       means: np.ndarray, m2s: np.ndarray, lows: np.ndarray, highs: np.ndarray) -> None:
    """:meth:`NumericSketch.add_thinned` for many sketches at once: row ``i`` of every array is sketch ``i``'s.

    The moments and ranges are merged in one vectorized pass (the same IEEE
    operations as :meth:`NumericSketch.add_moments`, on arrays): per sketch
    only its KLL update and a few attribute stores remain, which is what a
    block of many features needs (30 Python merges cost as much as their KLL
    updates).

    >>> import numpy as np
    >>> a, b = NumericSketch(), NumericSketch()
    >>> block = np.array([[1.0, 2.0, 3.0], [5.0, 5.0, 6.0]], dtype=np.float32)
    >>> means, m2s = block_moments(block)
    >>> add_thinned_blocks([a, b], block, n=3, thin_var=0.0, means=means, m2s=m2s,
    ...                    lows=block.min(axis=1), highs=block.max(axis=1))
    >>> (a.count, a.mean, a.m2, a.minimum, a.maximum), (b.count, round(b.mean, 4), b.kll.n)
    ((3, 2.0, 2.0, 1.0, 3.0), (3, 5.3333, 3))
    """
    width = len(sketches)
    counts = np.fromiter((sketch.count for sketch in sketches), dtype=np.float64, count=width)
    old_means = np.fromiter((sketch.mean for sketch in sketches), dtype=np.float64, count=width)
    old_m2s = np.fromiter((sketch.m2 for sketch in sketches), dtype=np.float64, count=width)
    total = counts + n
    delta = means - old_means
    new_means = old_means + delta * n / total
    new_m2s = old_m2s + (m2s + delta * delta * counts * n / total)
    new_lows = np.minimum(np.fromiter((sketch.minimum for sketch in sketches), dtype=np.float64, count=width),
                          lows.astype(np.float64))
    new_highs = np.maximum(np.fromiter((sketch.maximum for sketch in sketches), dtype=np.float64, count=width),
                           highs.astype(np.float64))
    update = kept.shape[1] > 0
    for sketch, values, count, mean, m2, low, high in zip(sketches, kept, total.tolist(), new_means.tolist(),
                                                         new_m2s.tolist(), new_lows.tolist(), new_highs.tolist()):
        sketch._cache.clear()
        if update:
            sketch.kll.update(values)
        sketch.thin_var += thin_var
        sketch.count = int(count)
        sketch.mean, sketch.m2, sketch.minimum, sketch.maximum = mean, m2, low, high


def block_moments(columns: np.ndarray, *, in_place: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Mean and sum of squared deviations of each row of a float32 block, as float64.

    The means come from float64 sums (float32 ones lost a part in 1e6 on
    values far from their mean). The squared deviations are summed in float32
    about a middle value of each row (the rows may be sorted in chunks), then
    moved to the mean in float64: relative error ~1e-6, without a float64 copy
    of the block. With ``in_place`` the deviations overwrite ``columns`` (a
    scratch copy): no temporary block at all.

    >>> means, m2s = block_moments(np.array([[1.0, 2.0, 3.0], [10.0, 10.0, 10.0]], dtype=np.float32))
    >>> means.tolist(), m2s.tolist()
    ([2.0, 10.0], [2.0, 0.0])
    """
    n = columns.shape[1]
    means = columns.sum(axis=1, dtype=np.float64) / n
    middle = min(n, SORT_CHUNK) // 2
    shift = columns[:, middle:middle + 1].copy()
    if in_place:
        columns -= shift
        deviations = columns
    else:
        deviations = columns - shift
    about_shift = np.einsum("ij,ij->i", deviations, deviations).astype(np.float64)
    offset = means - shift[:, 0].astype(np.float64)
    return means, np.maximum(about_shift - n * offset * offset, 0.0)


def order_keys(values: np.ndarray) -> np.ndarray:
    """float32 values as uint32 keys in the same order (``-0.0`` as ``0.0``): keys of many
    features, each shifted into its own range, sort and search in one numpy call.

    >>> order_keys(np.array([-2.0, -0.0, 0.0, 1.5, np.inf], dtype=np.float32)).tolist()
    [1073741823, 2147483648, 2147483648, 3217031168, 4286578688]
    """
    bits = (np.asarray(values, dtype=np.float32) + np.float32(0.0)).view(np.int32)
    # Negative floats order backwards as integers: flip all their bits; set the sign bit of the rest
    # (the arithmetic shift spreads the sign bit over the word: all ones for negative values).
    return (bits ^ ((bits >> 31) | np.int32(-0x80000000))).view(np.uint32)


def empty_sketch(data: bytes) -> NumericSketch | CategoricalSketch:
    """An empty sketch of the kind ``data`` holds, by its tag alone (the rest is not read)."""
    if data[:4] == _NUMERIC_MAGIC:
        return NumericSketch()
    if data[:4] == _CATEGORICAL_MAGIC:
        return CategoricalSketch()
    raise BundleFormatError(f"unknown sketch tag {data[:4]!r}")


def sketch_from_bytes(data: bytes) -> NumericSketch | CategoricalSketch:
    """Read either kind of sketch from its bytes, by its tag."""
    if data[:4] == _NUMERIC_MAGIC:
        return NumericSketch.from_bytes(data)
    if data[:4] == _CATEGORICAL_MAGIC:
        return CategoricalSketch.from_bytes(data)
    raise BundleFormatError(f"unknown sketch tag {data[:4]!r}")
