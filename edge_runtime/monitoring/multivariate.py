"""The multivariate drift signal: how far live rows fall from the reference's principal subspace.

At export, a PCA is fitted on the standardized numeric features of the
reference (``converters/multivariate.py``) and kept in the bundle
(``multivariate.bin``). Each served row's **reconstruction error** is the
length of what the PCA's leading components do not explain, in standardized
units: ``||Q^T (x - mean) / scale||`` for ``Q`` the remaining axes. A change in
how features move together (a correlation that flips) moves rows off the
subspace and raises the window's mean error even when every feature on its
own is unchanged, which univariate tests cannot see.

A window's verdict compares its mean error with the reference's: under no
drift the difference of the two means is about normal with variance
``sd^2 (1/m + 1/n)``, skewed for small windows, so the critical value is the
Pearson type III (gamma) quantile at the window's share of the family-wise
alpha, and an effect floor (a relative increase, ``DriftPolicy.multivariate_drift``)
keeps a large window from flagging a trivial one.

Examples
--------
>>> import numpy as np
>>> from edge_runtime.monitoring.multivariate import ReconstructionModel, ReferenceErrors
>>> axes = np.array([[1.0, 1.0], [1.0, -1.0]]) / np.sqrt(2.0)  # the diagonal first, then the rest
>>> model = ReconstructionModel(features=("a", "b"), columns=(0, 1), mean=np.zeros(2), scale=np.ones(2),
...                             axes=axes, components=1, variance_share=0.65, explained=0.9,
...                             reference=ReferenceErrors(rows=1000, mean=0.35, std=0.27, skewness=1.0))
>>> rows = np.array([[1.0, 1.0], [1.0, -1.0]], dtype=np.float32)
>>> [round(float(e), 4) for e in model.errors(rows)]   # on the diagonal: nothing lost; across it: all of it
[0.0, 1.4142]
>>> ReconstructionModel.from_bytes(model.to_bytes()).components
1
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

import numpy as np

from edge_runtime.config import DriftPolicy
from edge_runtime.errors import BundleFormatError
from edge_runtime.monitoring.sketches import NumericSketch
from edge_runtime.serving.bundle import Bundle
from edge_runtime.serving.schema import FeatureKind

__all__ = ["METRIC", "MULTIVARIATE_FILE", "MULTIVARIATE_FORMAT", "ReconstructionModel", "ReferenceErrors",
           "add_errors", "critical_error", "load_multivariate", "reconstruction_metrics", "skewed_quantile"]

MULTIVARIATE_FILE = "multivariate.bin"
MULTIVARIATE_FORMAT = "edge-runtime multivariate v1 (PCA reconstruction error)"
METRIC = "reconstruction_error"
_MAGIC = b"ERMV"
_VERSION = 1
_HEAD = struct.Struct("<4sBI")  # magic, version, header length; then the JSON header and float64 arrays
_NORMAL = NormalDist()
# OpenBLAS runs a float32 product on one thread while rows * inner * outer stays under
# 65536 * 4 (its SMP_THRESHOLD_MIN times GEMM_MULTITHREAD_THRESHOLD). A threaded call wakes its
# worker threads, which then spin for a while: measured +2 to +6 µs of process CPU per served
# row (against ~1.4 µs for the model and all of monitoring), so blocks are cut below it.
_SINGLE_THREAD_PRODUCT = 65536 * 4


@dataclass(frozen=True, slots=True, kw_only=True)
class ReferenceErrors:
    """The reference's per-row reconstruction errors, summarised: what a live window's mean is judged against.

    Computed out of fold at export (each row's error under a PCA fitted without
    it), so the reference is not more closely fitted than live rows are.
    """

    rows: int
    mean: float
    std: float
    skewness: float
    cap: float = math.inf  # each row's error is clipped here (the reference's 99.9th percentile)


class ReconstructionModel:
    """A PCA of the standardized numeric features, reduced to what the device needs.

    Parameters
    ----------
    features : tuple of str
        The numeric features it covers, in schema order.
    columns : tuple of int
        Their positions among the schema's features.
    mean, scale : numpy.ndarray
        Standardization per feature (a constant feature has scale 1).
    axes : numpy.ndarray
        ``d x d`` orthonormal principal axes, one per row, largest variance first.
    components : int
        How many leading axes the model keeps; the error is what the others carry.
    variance_share, explained : float
        The share of variance asked for, and the share the kept components explain.
    reference : ReferenceErrors
    """

    __slots__ = ("features", "columns", "mean", "scale", "axes", "components", "variance_share", "explained",
                 "reference", "_shift", "_project", "_bias", "_centre_first", "_all_columns", "_cap",
                 "_chunk", "_inverse_scale", "_kept", "_kept_t")

    def __init__(self, *, features: tuple[str, ...], columns: tuple[int, ...], mean: np.ndarray,
                 scale: np.ndarray, axes: np.ndarray, components: int, variance_share: float,
                 explained: float, reference: ReferenceErrors) -> None:
        d = len(features)
        if d < 2 or len(columns) != d or mean.shape != (d,) or scale.shape != (d,) or axes.shape != (d, d):
            raise BundleFormatError(f"multivariate model: inconsistent shapes for {d} features (at least 2)")
        if not 1 <= components < d:
            raise BundleFormatError(f"multivariate model: 'components' must be in [1, {d - 1}]. "
                                    f"Got {components}.")
        self.features, self.columns = features, columns
        self.mean, self.scale, self.axes = mean, scale, axes
        self.components, self.variance_share, self.explained = components, variance_share, explained
        self.reference = reference
        # Per block, one product with the discarded axes (divided by the scales
        # beforehand), minus the mean's image: ||Q^T z|| = ||(I - W W^T) z||. Folding the
        # mean in saves a pass over the block (~15% of the cost at 30 features), but in
        # float32 it loses ~1e-7 of |mean / scale| per feature: a feature far from zero in its
        # own units (a timestamp) has its mean subtracted first instead.
        self._shift = mean.astype(np.float32)
        self._project = np.ascontiguousarray((axes[components:] / scale).T, dtype=np.float32)
        self._bias = (mean / scale @ axes[components:].T).astype(np.float32)
        self._centre_first = bool((np.abs(mean) > 1e3 * scale).any())
        self._all_columns = columns == tuple(range(d))
        self._cap = np.float32(min(reference.cap, float(np.finfo(np.float32).max)))
        # With fewer kept axes than discarded ones (3 of 30 is usual), the residual is
        # taken through the kept ones instead: z - W (W^T z), two products with k columns
        # rather than one with d - k. At 30 features and 3 components that took a third of
        # the time per block (the products, and the chunks they are cut into, shrink 9x).
        self._kept: np.ndarray | None = None
        self._kept_t: np.ndarray | None = None
        self._inverse_scale = (1.0 / scale).astype(np.float32)
        outer = d - components
        if components < d - components:
            self._kept = np.ascontiguousarray(axes[:components].T, dtype=np.float32)
            self._kept_t = np.ascontiguousarray(axes[:components], dtype=np.float32)
            outer = components
        self._chunk = max(1, (_SINGLE_THREAD_PRODUCT - 1) // (d * outer))

    def errors(self, matrix: np.ndarray) -> np.ndarray:
        """Per-row reconstruction errors (float32) of a float32 block, columns in schema order.

        Missing values (and any non-finite one) are imputed with the reference
        mean, as the fit did; only the rows holding one pay for it.
        """
        # The model's columns may be a leading run of a wider block (a boolean or a
        # counted feature after them): only a block of exactly those columns goes as is.
        whole = self._all_columns and matrix.shape[1] == len(self.columns)
        return self._own_errors(matrix if whole else matrix[:, self.columns])

    def value_errors(self, columns: list[Any]) -> np.ndarray:
        """:meth:`errors` of rows given as one array per schema feature (the columns layout)."""
        own = np.empty((len(columns[self.columns[0]]), len(self.columns)), dtype=np.float32)
        for j, i in enumerate(self.columns):
            own[:, j] = np.asarray(columns[i], dtype=np.float64)
        return self._own_errors(own)

    def _own_errors(self, rows: np.ndarray) -> np.ndarray:
        """Errors of a block holding this model's columns only."""
        n, chunk = rows.shape[0], self._chunk
        if n <= chunk:
            errors = self._squared(rows)
        else:  # each product under the single-thread size
            errors = np.concatenate([self._squared(rows[a:a + chunk]) for a in range(0, n, chunk)])
        np.sqrt(errors, out=errors)
        if not math.isfinite(float(errors.sum())):  # one sum, not a mask, on the clean path
            bad = np.flatnonzero(~np.isfinite(errors))
            fixed = np.array(rows[bad], dtype=np.float32)
            holes = ~np.isfinite(fixed)
            fixed[holes] = np.broadcast_to(self._shift, fixed.shape)[holes]
            again = (fixed - self._shift) @ self._project
            errors[bad] = np.sqrt(np.einsum("ij,ij->i", again, again))
        np.minimum(errors, self._cap, out=errors)
        return errors

    def _squared(self, rows: np.ndarray) -> np.ndarray:
        if self._kept is not None and self._kept_t is not None:
            # Standardized first (one scratch block), so no mean is folded in and nothing cancels.
            residual = rows - self._shift
            residual *= self._inverse_scale
            residual -= (residual @ self._kept) @ self._kept_t
        elif self._centre_first:
            residual = (rows - self._shift) @ self._project
        else:
            residual = rows @ self._project
            residual -= self._bias
        squared: np.ndarray = np.einsum("ij,ij->i", residual, residual)
        return squared

    # ----------------------------------------------------------------- bytes
    def to_bytes(self) -> bytes:
        """A tag, a version, a JSON header, then ``mean``, ``scale`` and ``axes`` as little-endian float64."""
        header = json.dumps({
            "features": list(self.features), "columns": list(self.columns), "components": self.components,
            "variance_share": self.variance_share, "explained": self.explained,
            "reference": {"rows": self.reference.rows, "mean": self.reference.mean, "std": self.reference.std,
                          "skewness": self.reference.skewness,
                          "cap": self.reference.cap if math.isfinite(self.reference.cap) else None},
        }).encode("utf-8")
        arrays = np.concatenate([self.mean, self.scale, self.axes.reshape(-1)]).astype("<f8")
        return _HEAD.pack(_MAGIC, _VERSION, len(header)) + header + arrays.tobytes()

    @classmethod
    def from_bytes(cls, data: bytes) -> ReconstructionModel:
        """Read :meth:`to_bytes`.

        Raises
        ------
        BundleFormatError
            Not this format, a newer version, a corrupt header, or arrays that do not fit it.
        """
        try:
            magic, version, length = _HEAD.unpack_from(data)
        except struct.error as exc:
            raise BundleFormatError(f"multivariate model bytes are truncated ({len(data)} bytes)") from exc
        if magic != _MAGIC:
            raise BundleFormatError(f"not a multivariate model (tag {magic!r})")
        if version > _VERSION:
            raise BundleFormatError(f"multivariate model format {version} is newer than this "
                                    "edge-runtime reads")
        try:
            header = json.loads(data[_HEAD.size:_HEAD.size + length].decode("utf-8"))
            features = tuple(str(f) for f in header["features"])
            d = len(features)
            values = np.frombuffer(data[_HEAD.size + length:], dtype="<f8").astype(np.float64)
            if values.size != d * (d + 2):
                raise ValueError(f"{values.size} numbers for {d} features, expected {d * (d + 2)}")
            if not np.isfinite(values).all():
                raise ValueError("non-finite numbers")
            reference = header["reference"]
            errors = ReferenceErrors(rows=int(reference["rows"]), mean=float(reference["mean"]),
                                     std=float(reference["std"]), skewness=float(reference["skewness"]),
                                     cap=math.inf if reference["cap"] is None else float(reference["cap"]))
            finite = all(math.isfinite(v) for v in (errors.mean, errors.std, errors.skewness))
            if not errors.cap > 0 or errors.rows < 1 or not finite or errors.std < 0:
                raise ValueError(f"reference errors {errors}")
            if (values[d:2 * d] <= 0).any():
                raise ValueError("a scale is not positive")
            return cls(features=features, columns=tuple(int(c) for c in header["columns"]), mean=values[:d],
                       scale=values[d:2 * d], axes=values[2 * d:].reshape(d, d),
                       components=int(header["components"]), variance_share=float(header["variance_share"]),
                       explained=float(header["explained"]), reference=errors)
        except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise BundleFormatError(f"multivariate model is corrupt: {exc}") from exc

    def __repr__(self) -> str:
        return (f"ReconstructionModel(features={len(self.features)}, components={self.components}, "
                f"explained={self.explained:.3f})")


def load_multivariate(bundle: Bundle) -> ReconstructionModel | None:
    """The multivariate model of a verified bundle, or None when it has none (older bundles,
    fewer than two numeric features).

    Raises
    ------
    BundleFormatError
        The file is not covered by the manifest's checksums, is unreadable, or
        names features that are not the schema's numeric ones at those positions.
    """
    entry = (bundle.manifest.reference or {}).get("multivariate") or {}
    name = entry.get("file") if isinstance(entry, dict) else None
    if not name:
        return None
    if name not in bundle.manifest.files:
        raise BundleFormatError(f"the multivariate model '{name}' is not covered by the manifest checksums")
    try:
        model = ReconstructionModel.from_bytes((bundle.path / name).read_bytes())
    except BundleFormatError as exc:
        raise BundleFormatError(f"bundle file '{name}' is not a readable multivariate model ({exc})") from exc
    features = bundle.manifest.input_schema.features
    for column, feature in zip(model.columns, model.features):
        if not (0 <= column < len(features) and features[column].name == feature
                and features[column].kind is FeatureKind.NUMERIC):
            raise BundleFormatError(f"bundle file '{name}' names feature {feature!r} at position {column}, "
                                    "which is not that numeric feature of the schema")
    return model


def add_errors(sketch: NumericSketch, errors: np.ndarray) -> NumericSketch:
    """Fold a block's per-row errors into a window's sketch: count, mean, variance and range only.

    The verdict needs the window's mean error and its row count, nothing of
    the errors' quantiles, so the KLL sketch stays empty: no sort, no KLL
    update, a few µs per block.

    >>> sketch = add_errors(NumericSketch(), np.array([1.0, 2.0, 3.0], dtype=np.float32))
    >>> sketch.count, sketch.mean, sketch.variance, sketch.kll.is_empty()
    (3, 2.0, 0.6666666666666666, True)
    """
    n = int(errors.size)
    if n:
        mean = float(errors.sum(dtype=np.float64)) / n
        # Squares summed about zero, not the mean: errors are positive with a spread near
        # their mean, so little cancels, and it saves a pass (the verdict reads the mean).
        squares = float(np.dot(errors, errors))
        sketch.add_moments(n, mean, max(squares - n * mean * mean, 0.0), float(errors.min()),
                           float(errors.max()))
    return sketch


# ------------------------------------------------------------------ verdict
def skewed_quantile(p: float, skewness: float) -> float:
    """Standardized quantile of a distribution with this skewness: the Pearson type III (gamma)
    frequency factor by the Wilson-Hilferty approximation, the normal one when not right-skewed.

    A window mean of 100 skewed errors has a longer right tail than the normal
    says; this follows a gamma of the same skew (within ~10% of the exact gamma
    quantile at skewness 2, p = 0.9998).

    >>> round(skewed_quantile(0.99, 0.0), 3), round(skewed_quantile(0.99, 0.5), 3)
    (2.326, 2.688)
    >>> round(skewed_quantile(0.99, 50.0), 3)  # Cantelli: sqrt(0.99 / 0.01)
    9.95
    """
    z = _NORMAL.inv_cdf(p)
    if skewness <= 1e-6:  # a left skew shortens the right tail: the normal quantile is conservative
        return z
    base = 1.0 + skewness * z / 6.0 - skewness * skewness / 36.0
    if base <= 0:  # past the approximation (skewness above ~20): Cantelli's bound, true for any distribution
        return math.sqrt(p / (1.0 - p))
    return (2.0 / skewness) * (base ** 3 - 1.0)


def critical_error(ref: ReferenceErrors, m: int, alpha: float) -> float:
    """The mean error of ``m`` live rows that no-drift windows pass with probability ``alpha`` at most.

    The live mean's own quantile (skewed: a mean of ``m`` errors has skewness
    ``skewness / sqrt(m)``) plus the reference mean's normal one, added rather
    than pooled: the reference is one draw, shared by every window, so the bound
    holds for each window given any reference within its own ``alpha`` band,
    not only on average over references.

    >>> ref = ReferenceErrors(rows=10_000, mean=1.0, std=0.5, skewness=0.0)
    >>> round(critical_error(ref, 100, 0.01), 4)   # 1 + 2.326 * 0.5 * (1/10 + 1/100)
    1.1279
    """
    z = _NORMAL.inv_cdf(1.0 - alpha)
    live = skewed_quantile(1.0 - alpha, ref.skewness / math.sqrt(m)) / math.sqrt(m)
    return ref.mean + ref.std * (live + z / math.sqrt(ref.rows))


def reconstruction_metrics(model: ReconstructionModel, live: NumericSketch, policy: DriftPolicy,
                           a_warn: float, a_drift: float) -> dict[str, dict[str, float]]:
    """The window's mean reconstruction error with its warn and drift thresholds.

    Each threshold is the larger of the effect floor (the reference mean raised
    by ``multivariate_warn`` / ``multivariate_drift``) and the one-sided critical
    value of :func:`critical_error`. Only a rise counts: rows leaving the
    subspace raise the error.

    >>> from edge_runtime.config import DriftPolicy
    >>> axes = np.eye(2)
    >>> model = ReconstructionModel(features=("a", "b"), columns=(0, 1), mean=np.zeros(2), scale=np.ones(2),
    ...     axes=axes, components=1, variance_share=0.65, explained=0.9,
    ...     reference=ReferenceErrors(rows=10_000, mean=1.0, std=0.5, skewness=0.0))
    >>> live = NumericSketch().update(np.full(100, 1.5))
    >>> entry = reconstruction_metrics(model, live, DriftPolicy(), 0.05, 0.01)["reconstruction_error"]
    >>> entry["value"], round(entry["threshold"], 3), entry["value"] > entry["threshold"]
    (1.5, 1.128, True)
    """
    ref = model.reference
    n, m = ref.rows, live.count
    entry = {"value": live.mean if m else 0.0, "warn_threshold": math.inf, "threshold": math.inf,
             "reference_mean": ref.mean, "reference_std": ref.std, "components": float(model.components)}
    if n == 0 or m == 0:
        return {METRIC: entry}
    entry["warn_threshold"] = max(ref.mean * (1.0 + policy.multivariate_warn), critical_error(ref, m, a_warn))
    entry["threshold"] = max(ref.mean * (1.0 + policy.multivariate_drift), critical_error(ref, m, a_drift))
    return {METRIC: entry}
