"""Drift decisions between a reference profile and a live window: pure functions.

Numeric features are compared by the Kolmogorov-Smirnov distance and the
population stability index (PSI, bins at the reference deciles); counted
features (categorical, and numeric ones with few integer values such as
booleans) and predicted classes by the Jensen-Shannon distance, with the
chi-square test reported beside it; a classifier's class probabilities by KS.

Every metric has two thresholds, warn and drift, and each is the larger of

* an **effect floor** (``ks_drift=0.03``, ...): below it a shift is too small to
  matter, however many rows prove it. This is what keeps a window of a million
  rows from flagging a trivial shift;
* the metric's **critical value under no drift** for the two sample sizes, at
  a family-wise error rate ``alpha`` split (Bonferroni) over every test of the
  window, with the sketches' own error counted as **extra noise**: a sketch's
  rank error at a point has a standard deviation (``rank_sd``), which adds its
  variance to the sampling variance of the CDF gap. The reference is sketched
  at k=1000 at export (near exact), so a live window's own sampling decides.

Critical values need no scipy: KS uses its asymptotic formula
``c(a) * sqrt(1/n + 1/m + 4 (sd_ref^2 + sd_live^2))`` plus the 1/500
evaluation grid; PSI and the JS divergence follow ``chi2(df) / n_eff`` (and
``/ 8 n_eff``) under no drift, with the chi-square quantile by the
Wilson-Hilferty approximation.

Examples
--------
>>> import numpy as np
>>> from edge_runtime.monitoring.drift import DriftPolicy, ks_distance
>>> from edge_runtime.monitoring.sketches import NumericSketch
>>> rng = np.random.default_rng(0)
>>> ref = NumericSketch().update(rng.normal(size=20000))
>>> same = NumericSketch().update(rng.normal(size=5000))
>>> moved = NumericSketch().update(rng.normal(0.5, 1, size=5000))
>>> ks_distance(ref, same) < 0.04, 0.15 < ks_distance(ref, moved) < 0.25
(True, True)

KLL sketches compact with random coin flips, so distances vary slightly from
run to run, within the sketches' rank error.
"""

from __future__ import annotations

import enum
import functools
import math
import weakref
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Any

import numpy as np

from edge_runtime.config import DriftPolicy
from edge_runtime.monitoring.data_profile import Profile
from edge_runtime.monitoring.multivariate import ReconstructionModel, reconstruction_metrics
from edge_runtime.monitoring.sketches import CategoricalSketch, NumericSketch, order_keys

__all__ = [
    "DriftPolicy",
    "DriftStatus",
    "FeatureDrift",
    "FeatureVerdicts",
    "GRID_ERROR",
    "NUMERIC_METRICS",
    "NumericVerdicts",
    "WindowDrift",
    "assess_window",
    "chi2_quantile",
    "chi2_survival",
    "chi_square",
    "js_distance",
    "ks_critical",
    "ks_distance",
    "psi",
]

_NORMAL = NormalDist()
# KS is evaluated at the reference's quantiles on this rank grid, which adds at
# most 1/500 to the distance's error; 500 steps also hold the PSI deciles.
_GRID_STEPS = 500
_GRID = np.linspace(0.0, 1.0, _GRID_STEPS + 1)
GRID_ERROR = 1.0 / _GRID_STEPS
_PSI_FLOOR = 1e-4  # smallest bin share, so an empty bin does not make PSI infinite


class DriftStatus(str, enum.Enum):
    """Verdict for one feature in one window."""

    OK = "ok"  # no shift beyond the warn threshold
    WARN = "warn"  # a shift worth a look
    DRIFT = "drift"  # a shift that is both significant and large


# ------------------------------------------------------------------ statistics
@functools.lru_cache(maxsize=256)  # a window asks the same few (alpha, df) for every feature
def chi2_quantile(p: float, df: int) -> float:
    """Quantile of the chi-square distribution: exact for df 1 and 2, Wilson-Hilferty above
    (within 2.5% in the upper tail for df >= 3, as tested against scipy).

    >>> round(chi2_quantile(0.95, 9), 1), round(chi2_quantile(0.95, 1), 2)
    (16.9, 3.84)
    """
    if df == 1:
        return _NORMAL.inv_cdf(1.0 - (1.0 - p) / 2.0) ** 2
    if df == 2:
        return -2.0 * math.log(1.0 - p)
    z = _NORMAL.inv_cdf(p)
    h = 2.0 / (9.0 * df)
    return float(df * max(1.0 - h + z * math.sqrt(h), 0.0) ** 3)


def chi2_survival(x: float, df: int) -> float:
    """P(X > x) for a chi-square variable (Wilson-Hilferty).

    >>> round(chi2_survival(16.92, 9), 3)
    0.05
    """
    if x <= 0:
        return 1.0
    if df == 1:
        return 2.0 * (1.0 - _NORMAL.cdf(math.sqrt(x)))
    if df == 2:
        return math.exp(-x / 2.0)
    h = 2.0 / (9.0 * df)
    z = ((x / df) ** (1.0 / 3.0) - (1.0 - h)) / math.sqrt(h)
    return float(1.0 - _NORMAL.cdf(z))


def ks_critical(alpha: float, n: int, m: int) -> float:
    """Asymptotic two-sample KS critical distance at level ``alpha``.

    >>> round(ks_critical(0.05, 1000, 1000), 4)
    0.0607
    >>> ks_critical(0.05, 1000, 0)  # no values on one side: nothing can be significant
    inf
    """
    if n == 0 or m == 0:
        return math.inf
    return math.sqrt(-math.log(alpha / 2.0) / 2.0) * math.sqrt((n + m) / (n * m))


class _ReferenceGrid:
    """What a reference sketch contributes to every window's KS and PSI, computed once.

    ``points`` are the reference's values at the grid's ranks (non-decreasing;
    ties repeat), ``keys`` their :func:`order_keys` followed by a sentinel above
    every value, and ``cdf`` the reference's inclusive CDF at the points.
    """

    __slots__ = ("points", "keys", "cdf", "seen", "rank_sd")

    def __init__(self, reference: NumericSketch) -> None:
        self.points = reference.quantiles(_GRID)
        self.keys = np.append(order_keys(self.points).astype(np.uint64), np.uint64(_ABOVE))
        distinct, spread = np.unique(self.points, return_inverse=True)
        self.cdf = reference.cdf(distinct, inclusive=True)[spread]
        self.seen = reference.kll.n  # a sketch updated since is computed again
        self.rank_sd = reference.rank_sd


_GRIDS: weakref.WeakKeyDictionary[NumericSketch, _ReferenceGrid] = weakref.WeakKeyDictionary()
_ABOVE = 0xFFFFFFFF  # above the key of every float32 value, NaN included
_WIDTH = _GRID_STEPS + 2  # a grid's points and its sentinel
# The grids of a window's features, one after another (feature f's keys + f << 32), by grid
# identity: the same reference asks with the same grids window after window.
_STACKED: dict[tuple[int, ...], tuple[tuple[_ReferenceGrid, ...], np.ndarray, np.ndarray]] = {}


def _reference_grid(reference: NumericSketch) -> _ReferenceGrid:
    grid = _GRIDS.get(reference)
    if grid is None or grid.seen != reference.kll.n:
        grid = _GRIDS[reference] = _ReferenceGrid(reference)
    return grid


def _stacked(grids: Sequence[_ReferenceGrid]) -> tuple[np.ndarray, np.ndarray]:
    """The grids' keys one after another (feature f's shifted by ``f << 32``) and their CDFs as rows."""
    key = tuple(id(g) for g in grids)
    cached = _STACKED.get(key)
    if cached is None:
        if len(_STACKED) > 16:
            _STACKED.clear()
        offsets = np.arange(len(grids), dtype=np.uint64)[:, None] << np.uint64(32)
        cached = _STACKED[key] = (tuple(grids), (np.stack([g.keys for g in grids]) + offsets).ravel(),
                                  np.stack([g.cdf for g in grids]))
    return cached[1], cached[2]


def _live_cdfs(grids: Sequence[_ReferenceGrid], lives: Sequence[NumericSketch]) -> np.ndarray:
    """Each live sketch's inclusive CDF on its reference's grid, one row per feature.

    Read from the sketches' retained values: a value of weight ``w`` counts
    ``w`` at every grid point at or above it. Every feature's values are found
    on every feature's grid by one ``searchsorted`` over order-preserving
    integer keys (each feature in its own range), and counted by one weighted
    ``bincount``: a ``get_cdf`` call per feature cost ~20 µs, most of a
    30-feature window close.
    """
    cdf, totals = _live_weights(grids, lives)
    return np.asarray(cdf / totals[:, None])


def _live_weights(grids: Sequence[_ReferenceGrid], lives: Sequence[NumericSketch]
                  ) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_live_cdfs` before the division: the weight at or below each grid point, and each
    sketch's total weight (0 for a sketch that kept no value)."""
    items, weights, sizes, totals = NumericSketch.retained_many(lives)
    keys = _owners(sizes) + order_keys(items)  # uint64
    positions = np.searchsorted(_stacked(grids)[0], keys, side="left")
    counts = np.bincount(positions, weights=weights, minlength=len(lives) * _WIDTH)
    return counts.reshape(len(lives), _WIDTH)[:, :-1].cumsum(axis=1), totals


_OWNERS: dict[bytes, np.ndarray] = {}  # retained values' sizes -> each value's sketch, shifted as in _stacked


def _owners(sizes: np.ndarray) -> np.ndarray:
    """``f << 32`` for each retained value of sketch ``f``: the same sizes come back window after window."""
    key = sizes.tobytes()
    owners = _OWNERS.get(key)
    if owners is None:
        if len(_OWNERS) > 8:
            _OWNERS.clear()
        owners = _OWNERS[key] = np.repeat(np.arange(len(sizes), dtype=np.uint64), sizes) << np.uint64(32)
    return owners


def ks_distance(reference: NumericSketch, live: NumericSketch) -> float:
    """Largest gap between the two estimated CDFs.

    The gap is read at the reference's quantiles on a 1/500 rank grid with
    inclusive (right-continuous) CDFs: between two neighbouring points the
    reference CDF moves by at most 1/500, so the largest gap is missed by at
    most :data:`GRID_ERROR`, whatever the live data.
    """
    return float(_ks_and_psi([reference], [live], 10)[0][0])


def psi(reference: NumericSketch, live: NumericSketch, bins: int = 10) -> float:
    """Population stability index with bins cut at the reference quantiles.

    Each bin's count gets half a count added first: without it an almost empty
    bin in a small window makes the log ratio, and so the PSI, explode (its
    null tail at 100 rows was twice the chi-square's here).
    """
    return float(_ks_and_psi([reference], [live], bins)[1][0])


class _ReferencePlan:
    """What a list of reference sketches contributes to every window's KS, PSI and thresholds, computed once.

    ``rows`` are the positions of the references with values (the others are
    never compared), ``grids`` their grids, ``cdf`` the grids' CDFs as rows and
    ``expected`` each row's PSI bin shares (from the reference alone); ``counts``
    and ``rank_sd`` are per reference (0 for one without rows). The plan holds
    its references weakly and is computed again when one is gone or changed.
    """

    __slots__ = ("references", "seen", "rows", "grids", "cdf", "expected", "counts", "rank_sd", "limits")

    def __init__(self, references: Sequence[NumericSketch], bins: int) -> None:
        self.references = [weakref.ref(r) for r in references]
        self.seen = [(r.kll.n, r.count) for r in references]
        self.rows = [i for i, r in enumerate(references) if not r.kll.is_empty()]
        self.grids = [_reference_grid(references[i]) for i in self.rows]
        self.cdf = _stacked(self.grids)[1] if self.grids else np.zeros((0, _GRID_STEPS + 1))
        self.counts = np.array([r.count for r in references], dtype=np.float64)
        self.rank_sd = np.array([_reference_grid(r).rank_sd if r.count else 0.0 for r in references])
        self.expected = None
        if _GRID_STEPS % bins == 0 and self.grids:
            step = _GRID_STEPS // bins
            ends = np.ones((len(self.rows), 1))
            expected = (np.diff(self.cdf[:, step:-1:step], axis=1, prepend=0.0, append=ends)
                        * self.counts[self.rows][:, None] + 0.5)
            expected = np.clip(expected, _PSI_FLOOR, None)
            expected /= expected.sum(axis=1, keepdims=True)
            self.expected = expected
        # Thresholds by the windows' counts and rank_sd: full windows repeat them window after window.
        self.limits: dict[tuple[bytes, bytes, DriftPolicy, float, float], _NumericThresholds] = {}

    def thresholds(self, lives: Sequence[NumericSketch], policy: DriftPolicy, a_warn: float,
                   a_drift: float) -> _NumericThresholds:
        """:func:`_numeric_thresholds` of these references against ``lives``, kept for the next window."""
        rows = np.array([v.count for v in lives], dtype=np.float64)
        rank_sd = np.array([v.rank_sd for v in lives])
        key = (rows.tobytes(), rank_sd.tobytes(), policy, a_warn, a_drift)
        limits = self.limits.get(key)
        if limits is None:
            if len(self.limits) > 8:
                self.limits.clear()
            limits = self.limits[key] = _numeric_thresholds(self.counts, rows, self.rank_sd, rank_sd, policy,
                                                            a_warn, a_drift)
        return limits

    def current(self, references: Sequence[NumericSketch]) -> bool:
        """Whether the plan is still that of ``references`` (the same objects, unchanged)."""
        return len(references) == len(self.references) and all(
            w() is r and seen == (r.kll.n, r.count) for w, r, seen in zip(self.references, references, self.seen))


# Plans by the references' identities and the PSI's bins (a window's reference asks with the same list
# window after window); each plan checks that its references are still those objects.
_PLANS: dict[tuple[int, tuple[int, ...]], _ReferencePlan] = {}


def _reference_plan(references: Sequence[NumericSketch], bins: int) -> _ReferencePlan:
    key = (bins, tuple(map(id, references)))
    plan = _PLANS.get(key)
    if plan is None or not plan.current(references):
        if len(_PLANS) > 16:
            _PLANS.clear()
        plan = _PLANS[key] = _ReferencePlan(references, bins)
    return plan


def _ks_and_psi(references: Sequence[NumericSketch], lives: Sequence[NumericSketch],
                bins: int) -> tuple[np.ndarray, np.ndarray]:
    """KS distances and PSIs of many features at once, vectorized over features."""
    return _compare(_reference_plan(references, bins), references, lives, bins)


def _compare(plan: _ReferencePlan, references: Sequence[NumericSketch], lives: Sequence[NumericSketch],
             bins: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_ks_and_psi` with the references' plan at hand."""
    ks, psis = np.zeros(len(lives)), np.zeros(len(lives))
    if not plan.rows:
        return ks, psis
    chosen = lives if len(plan.rows) == len(lives) else [lives[i] for i in plan.rows]
    weights, totals = _live_weights(plan.grids, chosen)
    if totals.all() and plan.expected is not None:
        # Every live sketch has values and the PSI's edges are grid points: the window close's case.
        live_cdf = weights / totals[:, None]
        gaps = np.abs(plan.cdf - live_cdf).max(axis=1)
        counts = np.array([live.count for live in chosen], dtype=np.float64)[:, None]
        step = _GRID_STEPS // bins
        edges = np.empty((len(chosen), bins + 1))  # 0, the live CDF at the reference's deciles, 1
        edges[:, 0], edges[:, -1] = 0.0, 1.0
        edges[:, 1:-1] = live_cdf[:, step:-1:step]
        actual = (edges[:, 1:] - edges[:, :-1]) * counts + 0.5
        np.maximum(actual, _PSI_FLOOR, out=actual)
        actual /= actual.sum(axis=1, keepdims=True)
        shares = plan.expected
        found = np.sum((actual - shares) * np.log(actual / shares), axis=1)
        if chosen is lives:
            return gaps, found
        ks[plan.rows], psis[plan.rows] = gaps, found
        return ks, psis
    # Nothing sketched (yet) on either side: nothing to compare.
    live_rows = np.flatnonzero(totals).tolist()
    if not live_rows:
        return ks, psis
    usable = [plan.rows[row] for row in live_rows]
    ref_cdf = plan.cdf[live_rows]
    expected = plan.expected[live_rows] if plan.expected is not None else None
    live_cdf = weights[live_rows] / totals[live_rows][:, None]
    ks[usable] = np.abs(ref_cdf - live_cdf).max(axis=1)
    live_counts = np.array([lives[i].count for i in usable], dtype=np.float64)[:, None]
    ends = np.ones((len(usable), 1))
    if expected is not None:  # the edges are grid points
        step = _GRID_STEPS // bins
        live_at = live_cdf[:, step:-1:step]
    else:
        ref_at = np.empty((len(usable), bins - 1))
        live_at = np.empty((len(usable), bins - 1))
        for row, i in enumerate(usable):
            edges = references[i].quantiles(np.linspace(0, 1, bins + 1)[1:-1])
            ref_at[row] = references[i].cdf(edges, inclusive=True)
            live_at[row] = lives[i].cdf(edges, inclusive=True)
        ref_counts = np.array([references[i].count for i in usable], dtype=np.float64)[:, None]
        expected = np.diff(ref_at, axis=1, prepend=0.0, append=ends) * ref_counts + 0.5
        expected = np.clip(expected, _PSI_FLOOR, None)
        expected /= expected.sum(axis=1, keepdims=True)
    actual = np.diff(live_at, axis=1, prepend=0.0, append=ends) * live_counts + 0.5
    actual = np.clip(actual, _PSI_FLOOR, None)
    actual /= actual.sum(axis=1, keepdims=True)
    psis[usable] = np.sum((actual - expected) * np.log(actual / expected), axis=1)
    return ks, psis


def _aligned(reference: CategoricalSketch, live: CategoricalSketch) -> tuple[np.ndarray, np.ndarray]:
    keys = sorted(set(reference.counts) | set(live.counts))
    ref = np.array([reference.counts.get(k, 0) for k in keys] + [reference.other], dtype=np.float64)
    cur = np.array([live.counts.get(k, 0) for k in keys] + [live.other], dtype=np.float64)
    keep = (ref + cur) > 0
    return ref[keep], cur[keep]


def js_distance(reference: CategoricalSketch, live: CategoricalSketch) -> float:
    """Jensen-Shannon distance (base 2, in [0, 1]) between two category distributions.

    >>> from edge_runtime.monitoring.sketches import CategoricalSketch
    >>> a = CategoricalSketch().update(["x"] * 50 + ["y"] * 50)
    >>> b = CategoricalSketch().update(["x"] * 100)
    >>> round(js_distance(a, b), 3)
    0.558
    """
    if reference.total == 0 or live.total == 0:
        return 0.0
    ref, cur = _aligned(reference, live)
    p, q = ref / ref.sum(), cur / cur.sum()
    m = (p + q) / 2.0
    with np.errstate(divide="ignore", invalid="ignore"):
        kl_p = np.where(p > 0, p * np.log2(p / m), 0.0).sum()
        kl_q = np.where(q > 0, q * np.log2(q / m), 0.0).sum()
    return float(math.sqrt(max((kl_p + kl_q) / 2.0, 0.0)))


def chi_square(reference: CategoricalSketch, live: CategoricalSketch) -> tuple[float, int]:
    """Pearson's chi-square statistic of the 2 x K table of counts, and its degrees of freedom."""
    if reference.total == 0 or live.total == 0:
        return 0.0, 0
    ref, cur = _aligned(reference, live)
    table = np.vstack([ref, cur])
    expected = table.sum(axis=1, keepdims=True) * table.sum(axis=0, keepdims=True) / table.sum()
    statistic = float(((table - expected) ** 2 / expected).sum())
    return statistic, int(table.shape[1] - 1)


# ------------------------------------------------------------------ decisions
@dataclass(frozen=True, slots=True, kw_only=True)
class FeatureDrift:
    """The verdict for one feature (or the predictions) in one window.

    ``metric``, ``value`` and ``threshold`` name the metric that decided (the
    one closest to or furthest past its drift threshold); ``metrics`` holds
    every metric's value and thresholds.
    """

    name: str
    kind: str
    status: DriftStatus
    metric: str
    value: float
    threshold: float
    warn_threshold: float
    rows: int
    reference_rows: int
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)

    @property
    def drift(self) -> bool:
        """True when the status is drift."""
        return self.status is DriftStatus.DRIFT

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape of ``edge-runtime drift --json``; a threshold no value can reach
        (no rows on one side) is null, as JSON has no infinity."""
        return {"status": self.status.value, "drift": self.drift, "metric": self.metric,
                "value": self.value, "threshold": _finite(self.threshold),
                "warn_threshold": _finite(self.warn_threshold), "rows": self.rows,
                "reference_rows": self.reference_rows,
                "metrics": {name: {k: _finite(v) for k, v in entry.items()}
                            for name, entry in self.metrics.items()}}

    @classmethod
    def from_dict(cls, name: str, kind: str, data: dict[str, Any]) -> FeatureDrift:
        """Read back :meth:`to_dict` (a null threshold is one no value can reach)."""
        return cls(name=name, kind=kind, status=DriftStatus(data["status"]), metric=str(data["metric"]),
                   value=float(data["value"]), threshold=_unbounded(data.get("threshold")),
                   warn_threshold=_unbounded(data.get("warn_threshold")), rows=int(data.get("rows", 0)),
                   reference_rows=int(data.get("reference_rows", 0)),
                   metrics={metric: {k: math.inf if v is None else v for k, v in entry.items()}
                            for metric, entry in (data.get("metrics") or {}).items()})


# A numeric verdict's numbers, in the order windows are stored in (windows.encode_drift): the decisive
# metric's value, threshold and warn threshold, the two row counts, then each metric's entries.
NUMERIC_METRICS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("ks", ("value", "warn_threshold", "threshold", "sketch_error")),
    ("psi", ("value", "warn_threshold", "threshold")),
)
_STATUS_BY_CODE = (DriftStatus.OK, DriftStatus.WARN, DriftStatus.DRIFT)


@dataclass(frozen=True, slots=True)
class NumericVerdicts:
    """The KS and PSI verdicts of many numeric comparisons as arrays, one row each (in ``names`` order).

    ``codes`` holds each row's status (0 ok, 1 warn, 2 drift) and decisive
    metric (0 KS, 1 PSI) as uint8; ``numbers`` its twelve numbers as float64,
    in the stored order (:data:`NUMERIC_METRICS`). A window close stores these
    as they are and builds no :class:`FeatureDrift` (30 of them cost ~90 µs);
    :meth:`verdicts` builds them for whoever reads them.
    """

    names: tuple[str, ...]
    kind: str
    codes: np.ndarray
    numbers: np.ndarray

    def verdicts(self) -> list[FeatureDrift]:
        """Each row as a :class:`FeatureDrift`."""
        out = []
        for name, (state, by_psi), row in zip(self.names, self.codes.tolist(), self.numbers.tolist()):
            value, threshold, warn, rows, reference_rows, k, kw, kd, ke, p, pw, pd = row
            out.append(FeatureDrift(name=name, kind=self.kind, status=_STATUS_BY_CODE[state],
                                    metric="psi" if by_psi else "ks", value=value, threshold=threshold,
                                    warn_threshold=warn, rows=int(rows), reference_rows=int(reference_rows),
                                    metrics={"ks": {"value": k, "warn_threshold": kw, "threshold": kd,
                                                    "sketch_error": ke},
                                             "psi": {"value": p, "warn_threshold": pw, "threshold": pd}}))
        return out


class FeatureVerdicts(Mapping[str, FeatureDrift]):
    """A window's feature verdicts by name, in the window's feature order: the numeric ones held as
    :class:`NumericVerdicts` until a verdict is read, the others as :class:`FeatureDrift`.

    ``entries`` gives, per feature in order, its row in ``numeric`` or its verdict; ``plain``
    is true when every feature is numeric, row ``i`` the ``i``-th (30 numeric features: the
    common case, read without a loop over entries).
    """

    __slots__ = ("names", "numeric", "entries", "plain", "_built")

    def __init__(self, names: Sequence[str], numeric: NumericVerdicts,
                 others: Mapping[str, FeatureDrift]) -> None:
        self.names = tuple(names)
        self.numeric = numeric
        self.plain = not others and self.names == numeric.names
        self.entries: list[int | FeatureDrift]
        if self.plain:
            self.entries = list(range(len(self.names)))
        else:
            rows = {name: row for row, name in enumerate(numeric.names)}
            self.entries = [others[name] if name in others else rows[name] for name in self.names]
        self._built: dict[str, FeatureDrift] | None = None

    def _verdicts(self) -> dict[str, FeatureDrift]:
        if self._built is None:
            numeric = self.numeric.verdicts()
            self._built = {name: numeric[entry] if isinstance(entry, int) else entry
                           for name, entry in zip(self.names, self.entries)}
        return self._built

    def __getitem__(self, name: str) -> FeatureDrift:
        return self._verdicts()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.names)

    def __len__(self) -> int:
        return len(self.names)

    def __repr__(self) -> str:
        return repr(self._verdicts())

    def statuses(self) -> list[DriftStatus]:
        """Each feature's status, in order, without building the numeric verdicts."""
        codes = self.numeric.codes[:, 0].tolist()
        if self.plain:
            return [_STATUS_BY_CODE[code] for code in codes]
        return [_STATUS_BY_CODE[codes[entry]] if isinstance(entry, int) else entry.status
                for entry in self.entries]

    def ratios(self) -> list[float]:
        """Each feature's decisive value over its drift threshold (0 for a zero threshold), in order."""
        ratios = [value / threshold if threshold else 0.0
                  for value, threshold in self.numeric.numbers[:, :2].tolist()]
        if self.plain:
            return ratios
        return [ratios[entry] if isinstance(entry, int) else
                entry.value / entry.threshold if entry.threshold else 0.0 for entry in self.entries]


@dataclass(frozen=True, slots=True, kw_only=True)
class WindowDrift:
    """All verdicts of one window."""

    features: Mapping[str, FeatureDrift]
    prediction: FeatureDrift | None
    multivariate: FeatureDrift | None = None  # the PCA reconstruction error, when the bundle has its model

    def verdicts(self) -> list[FeatureDrift]:
        """Every verdict of the window, as stored: the features', then the prediction's and the multivariate one."""
        out = list(self.features.values())
        out += [v for v in (self.prediction, self.multivariate) if v is not None]
        return out

    def _statuses(self) -> list[DriftStatus]:
        if isinstance(self.features, FeatureVerdicts):
            return self.features.statuses()
        return [f.status for f in self.features.values()]

    @property
    def drifted(self) -> list[str]:
        """Names of the features with status drift."""
        return [n for n, status in zip(self.features, self._statuses()) if status is DriftStatus.DRIFT]

    @property
    def warned(self) -> list[str]:
        """Names of the features with status warn."""
        return [n for n, status in zip(self.features, self._statuses()) if status is DriftStatus.WARN]

    def worst(self, n: int = 3) -> list[str]:
        """The ``n`` features furthest past (or closest to) their drift threshold."""
        if isinstance(self.features, FeatureVerdicts):
            names, ratios = self.features.names, self.features.ratios()
        else:
            names = tuple(f.name for f in self.features.values())
            ratios = [f.value / f.threshold if f.threshold else 0.0 for f in self.features.values()]
        # A stable sort: ties keep their order.
        ranked = sorted(range(len(names)), key=ratios.__getitem__, reverse=True)
        return [names[i] for i in ranked[:n]]

    def summary(self) -> dict[str, Any]:
        """Window-level counts and the worst features."""
        statuses = self._statuses()
        return {"features": len(self.features),
                "drifted": [n for n, status in zip(self.features, statuses) if status is DriftStatus.DRIFT],
                "warned": [n for n, status in zip(self.features, statuses) if status is DriftStatus.WARN],
                "worst": self.worst(),
                "prediction": self.prediction.status.value if self.prediction else None,
                "multivariate": self.multivariate.status.value if self.multivariate else None}


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _unbounded(value: float | None) -> float:
    return math.inf if value is None else float(value)


def _effective_n(n: float, m: float) -> float:
    return n * m / (n + m) if n + m else 0.0


def _small_sample(cells: int, n: int, m: int) -> float:
    """Widening of chi-square-based critical values for few rows per cell (measured: the
    null tails of PSI and JS exceed the chi-square by up to ~10% at 100 rows over 10 cells)."""
    return 1.0 + cells / max(min(n, m), 1)


def _metric(value: float, warn_floor: float, drift_floor: float, critical_warn: float,
            critical_drift: float) -> dict[str, float]:
    return {"value": value, "warn_threshold": max(warn_floor, critical_warn),
            "threshold": max(drift_floor, critical_drift)}


@dataclass(frozen=True, slots=True)
class _NumericThresholds:
    """KS and PSI thresholds of many numeric comparisons, one array entry each (:func:`_numeric_thresholds`)."""

    ks_warn: np.ndarray
    ks_drift: np.ndarray
    ks_error: np.ndarray
    psi_warn: np.ndarray
    psi_drift: np.ndarray
    rows: np.ndarray
    reference_rows: np.ndarray
    empty: np.ndarray
    # Each comparison's stored numbers (NumericVerdicts.numbers) that do not depend on the
    # window's distances: its rows and thresholds, the rest zero.
    template: np.ndarray


def _numeric_thresholds(n: np.ndarray, m: np.ndarray, ref_sd: np.ndarray, live_sd: np.ndarray,
                        policy: DriftPolicy, a_warn: float, a_drift: float) -> _NumericThresholds:
    """KS and PSI thresholds of many numeric sketches at once, from the row counts (``n`` the
    references', ``m`` the windows') and the sketches' ``rank_sd``.

    Both sketches' errors enter as noise added to the sampling noise: under no
    drift the gap between two empirical CDFs at a point has variance at most
    ``(1/n + 1/m) / 4``, and a sketch adds its own ``rank_sd ** 2``, so the KS
    critical value is ``c(alpha) * sqrt(1/n + 1/m + 4 (sd_ref**2 + sd_live**2))``
    plus the grid's 1/500. PSI's chi-square scale takes the same variance as
    its ``1 / n_eff``. ``sketch_error`` reports what the sketches add to the KS
    critical value; the KS effect floors get it too, as they bound the shift itself.
    """
    sketch_var = 4.0 * (ref_sd ** 2 + live_sd ** 2)
    empty = (n == 0) | (m == 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        sampling = np.where(empty, np.inf, 1.0 / n + 1.0 / m)
    spread = np.sqrt(sampling + sketch_var)
    c_warn = math.sqrt(-math.log(a_warn / 2.0) / 2.0)
    c_drift = math.sqrt(-math.log(a_drift / 2.0) / 2.0)
    with np.errstate(invalid="ignore"):
        ks_error = np.where(empty, np.inf, c_drift * (spread - np.sqrt(sampling)) + GRID_ERROR)
    # The effect floors are on the shift itself: a measured KS can exceed it by what the
    # sketches add, so that is added to them (without it, a true 0.02 shift measured above
    # the 0.03 floor in a quarter of 50,000-row windows).
    margin = np.where(empty, 0.0, ks_error)
    ks_warn = np.maximum(policy.ks_warn + margin, c_warn * spread + GRID_ERROR)
    ks_drift = np.maximum(policy.ks_drift + margin, c_drift * spread + GRID_ERROR)
    widen = 1.0 + policy.psi_bins / np.maximum(np.minimum(n, m), 1.0)
    df = policy.psi_bins - 1
    psi_warn = np.maximum(policy.psi_warn, widen * chi2_quantile(1 - a_warn, df) * spread ** 2)
    psi_drift = np.maximum(policy.psi_drift, widen * chi2_quantile(1 - a_drift, df) * spread ** 2)
    rows, reference_rows = m.astype(np.int64), n.astype(np.int64)
    template = np.zeros((len(m), 12))
    template[:, 3], template[:, 4] = rows, reference_rows
    template[:, 6], template[:, 7], template[:, 8] = ks_warn, ks_drift, ks_error
    template[:, 10], template[:, 11] = psi_warn, psi_drift
    return _NumericThresholds(ks_warn, ks_drift, ks_error, psi_warn, psi_drift, rows, reference_rows, empty,
                              template)


def _numeric_table(names: Sequence[str], ks: np.ndarray, psis: np.ndarray, limits: _NumericThresholds,
                   at: slice, *, kind: str = "numeric") -> NumericVerdicts:
    """The KS and PSI verdicts of the comparisons ``at`` (a slice of ``ks``, ``psis`` and ``limits``)."""
    ks, psis = ks[at], psis[at]
    ks_warn, ks_drift = limits.ks_warn[at], limits.ks_drift[at]
    psi_warn, psi_drift = limits.psi_warn[at], limits.psi_drift[at]
    codes = np.empty((len(ks), 2), dtype=np.uint8)
    status = codes[:, 0]
    status[:] = np.where((ks > ks_drift) | (psis > psi_drift), 2, np.where((ks > ks_warn) | (psis > psi_warn), 1, 0))
    status[limits.empty[at]] = 0
    by_psi = psis / psi_drift > ks / ks_drift  # on a tie, KS
    codes[:, 1] = by_psi
    numbers = limits.template[at].copy()
    numbers[:, 0] = np.where(by_psi, psis, ks)
    numbers[:, 1] = np.where(by_psi, psi_drift, ks_drift)
    numbers[:, 2] = np.where(by_psi, psi_warn, ks_warn)
    numbers[:, 5], numbers[:, 9] = ks, psis
    return NumericVerdicts(tuple(names), kind, codes, numbers)


_PLAIN_CELLS = 64  # up to this many categories, the sums in plain Python cost less than numpy's calls


def _js_and_chi_square(reference: CategoricalSketch, live: CategoricalSketch) -> tuple[float, float, int]:
    """:func:`js_distance` and :func:`chi_square` from one alignment of the counts (the same sums,
    in plain Python for a few categories: a classifier's predictions took ~80 µs through numpy)."""
    if reference.total == 0 or live.total == 0:
        return 0.0, 0.0, 0
    ref_counts, live_counts = reference.counts, live.counts
    keys = sorted(ref_counts.keys() | live_counts.keys())
    if len(keys) >= _PLAIN_CELLS:
        statistic, df = chi_square(reference, live)
        return js_distance(reference, live), statistic, df
    cells = [(ref_counts.get(k, 0), live_counts.get(k, 0)) for k in keys] + [(reference.other, live.other)]
    cells = [(a, b) for a, b in cells if a + b > 0]
    n, m = float(sum(a for a, _ in cells)), float(sum(b for _, b in cells))
    total = n + m
    divergence = statistic = 0.0
    for a, b in cells:
        p, q = a / n, b / m
        middle = (p + q) / 2.0
        divergence += (p * math.log2(p / middle) if p > 0 else 0.0) + (q * math.log2(q / middle) if q > 0 else 0.0)
        column = float(a + b)
        expected_ref, expected_live = n * column / total, m * column / total
        statistic += (a - expected_ref) ** 2 / expected_ref + (b - expected_live) ** 2 / expected_live
    return math.sqrt(max(divergence / 2.0, 0.0)), statistic, len(cells) - 1


def _categorical_metrics(ref: CategoricalSketch, live: CategoricalSketch, policy: DriftPolicy,
                         a_warn: float, a_drift: float) -> dict[str, dict[str, float]]:
    n, m = ref.total, live.total
    distance, statistic, df = _js_and_chi_square(ref, live)
    n_eff = _effective_n(n, m)
    widen = _small_sample(df + 1, n, m)

    def js_critical(alpha: float) -> float:
        # JS divergence (bits) ~ chi2(df) / (8 n_eff ln 2) under no drift; distance is its root.
        return math.sqrt(widen * chi2_quantile(1 - alpha, df) / (8 * n_eff * math.log(2))) if df else 0.0

    return {
        "js": _metric(distance, policy.js_warn, policy.js_drift, js_critical(a_warn),
                      js_critical(a_drift)),
        "chi2": {"value": statistic, "df": float(df),
                 "p_value": chi2_survival(statistic, df) if df else 1.0},
    }


def _verdict(name: str, kind: str, metrics: dict[str, dict[str, float]], rows: int,
             reference_rows: int) -> FeatureDrift:
    decisive = {k: v for k, v in metrics.items() if "threshold" in v}
    if rows == 0 or reference_rows == 0:
        status = DriftStatus.OK
    elif any(v["value"] > v["threshold"] for v in decisive.values()):
        status = DriftStatus.DRIFT
    elif any(v["value"] > v["warn_threshold"] for v in decisive.values()):
        status = DriftStatus.WARN
    else:
        status = DriftStatus.OK
    metric = max(decisive, key=lambda k: decisive[k]["value"] / decisive[k]["threshold"]
                 if decisive[k]["threshold"] else 0.0)
    chosen = decisive[metric]
    return FeatureDrift(name=name, kind=kind, status=status, metric=metric, value=chosen["value"],
                        threshold=chosen["threshold"], warn_threshold=chosen["warn_threshold"], rows=rows,
                        reference_rows=reference_rows, metrics=metrics)


def assess_window(reference: Profile, live: Profile, policy: DriftPolicy, *,
                  multivariate: ReconstructionModel | None = None) -> WindowDrift:
    """Compare a live window with the reference, feature by feature and for the predictions.

    Numeric features are judged by KS and PSI, counted ones (categorical,
    boolean, small integers) by the JS distance. A classifier's predictions are
    judged by the mix of predicted classes (JS) and by each class's probability
    (KS, ``score_ks:<class>``) when the reference has them; a regressor's by KS
    and PSI of the predicted values. The family-wise ``alpha`` is split over
    all these tests.

    Parameters
    ----------
    reference : Profile
        From the bundle.
    live : Profile
        One closed window.
    policy : DriftPolicy
    multivariate : ReconstructionModel, optional
        The bundle's PCA: judges the window's reconstruction errors (one more test).

    Returns
    -------
    WindowDrift
    """
    judged: list[str] = []  # the features compared, in the window's order
    numeric: list[str] = []
    refs: list[NumericSketch] = []  # every numeric comparison, in one vectorized pass below
    lives: list[NumericSketch] = []
    counted: list[str] = []
    reference_features = reference.features
    for n, live_sketch in live.features.items():
        ref_sketch = reference_features.get(n)
        if isinstance(ref_sketch, NumericSketch) and isinstance(live_sketch, NumericSketch):
            judged.append(n)
            numeric.append(n)
            refs.append(ref_sketch)
            lives.append(live_sketch)
        elif isinstance(ref_sketch, CategoricalSketch) and isinstance(live_sketch, CategoricalSketch):
            judged.append(n)
            counted.append(n)
    classifier = reference.predictions is not None and live.predictions is not None
    classes = [c for c in live.class_scores if c in reference.class_scores] if classifier else []
    regressor = not classifier and bool(reference.scores.count and live.scores.count)
    tests = 2 * len(numeric) + len(counted) + (1 + len(classes) if classifier else 2 if regressor else 0)
    pca = multivariate if live.multivariate is not None else None
    tests += 1 if pca is not None else 0
    a_warn, a_drift = policy.alpha_warn / max(tests, 1), policy.alpha_drift / max(tests, 1)
    # After the features: the class scores, then the top score or predicted value.
    refs += [reference.class_scores[c] for c in classes] + [reference.scores]
    lives += [live.class_scores[c] for c in classes] + [live.scores]
    plan = _reference_plan(refs, policy.psi_bins)
    ks_values, psi_values = _compare(plan, refs, lives, policy.psi_bins)
    # Every numeric comparison's thresholds in one pass (the top score's too: not judged, but cheap).
    limits = plan.thresholds(lives, policy, a_warn, a_drift)
    width = len(numeric)
    results: dict[str, FeatureDrift] = {}
    for name in counted:
        ref_counts, live_counts = reference.features[name], live.features[name]
        assert isinstance(ref_counts, CategoricalSketch) and isinstance(live_counts, CategoricalSketch)
        metrics = _categorical_metrics(ref_counts, live_counts, policy, a_warn, a_drift)
        results[name] = _verdict(name, "categorical", metrics, live_counts.total, ref_counts.total)
    table = _numeric_table(numeric, ks_values, psi_values, limits, slice(0, width))
    features = FeatureVerdicts(judged, table, results)
    prediction = None
    if classifier:
        assert reference.predictions is not None and live.predictions is not None
        metrics = _categorical_metrics(reference.predictions, live.predictions, policy, a_warn, a_drift)
        metrics["score_ks"] = {"value": float(ks_values[-1])}  # the top probability's: reported, not judged
        for label, value, warn, threshold in zip(classes, ks_values[width:-1].tolist(),
                                                 limits.ks_warn[width:-1].tolist(),
                                                 limits.ks_drift[width:-1].tolist()):
            metrics[f"score_ks:{label}"] = {"value": value, "warn_threshold": warn, "threshold": threshold}
        prediction = _verdict("prediction", "prediction", metrics, live.predictions.total,
                              reference.predictions.total)
    elif regressor:
        prediction = _numeric_table(["prediction"], ks_values, psi_values, limits, slice(-1, None),
                                    kind="prediction").verdicts()[0]
    joint = None
    if pca is not None and live.multivariate is not None:
        joint = _verdict("multivariate", "multivariate",
                         reconstruction_metrics(pca, live.multivariate, policy, a_warn, a_drift),
                         live.multivariate.count, pca.reference.rows)
    return WindowDrift(features=features, prediction=prediction, multivariate=joint)
