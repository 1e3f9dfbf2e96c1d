"""Fitting the multivariate drift model at export: a PCA of the standardized numeric reference.

The device judges each window by the mean reconstruction error of its rows
(``edge_runtime/monitoring/multivariate.py``); this module fits what it needs,
with numpy only: the model's numeric input columns as float32 (the values the
device's monitor sees), standardized (a constant column gets scale 1),
missing values imputed with the mean (0 once standardized), principal axes by
an SVD of their covariance, and the fewest components explaining at least
``variance_share`` of the variance (65%, as peers use; at most all but one,
so that something is left to measure). Categorical features are left out: a
joint shift that involves them is not seen by this signal.

The reference's own errors, whose mean and spread set the device's
thresholds, are computed out of fold: each row's error under a PCA fitted on
the other folds. In-sample errors would be smaller than any live row's (the
axes fit the rows they come from), a bias that grows with the number of
features over the number of rows.

Examples
--------
>>> import numpy as np
>>> from converters.multivariate import fit_multivariate
>>> from edge_runtime.serving.schema import FeatureSpec, InputSchema
>>> rng = np.random.default_rng(0)
>>> a = rng.normal(size=2000); b = 0.8 * a + 0.6 * rng.normal(size=2000)
>>> schema = InputSchema(features=(FeatureSpec(name="a"), FeatureSpec(name="b")))
>>> model = fit_multivariate(np.column_stack([a, b]), schema)
>>> model.components, round(model.explained, 2), round(model.reference.mean, 2)
(1, 0.9, 0.36)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from converters.features import is_dataframe
from edge_runtime.errors import ExportError
from edge_runtime.monitoring.multivariate import ReconstructionModel, ReferenceErrors
from edge_runtime.serving.schema import FeatureKind, InputSchema

__all__ = ["FOLDS", "VARIANCE_SHARE", "fit_multivariate", "numeric_matrix"]

VARIANCE_SHARE = 0.65
FOLDS = 5
CAP_QUANTILE = 0.999
_CHUNK = 65_536  # rows standardized at a time, so a large reference is not copied whole in float64


def numeric_matrix(X: Any, schema: InputSchema) -> tuple[tuple[int, ...], np.ndarray]:
    """The schema's numeric features of ``X`` as a float32 matrix, and their positions in the schema."""
    columns = tuple(i for i, f in enumerate(schema.features) if f.kind is FeatureKind.NUMERIC)
    matrix = np.empty((len(X), len(columns)), dtype=np.float32)
    for j, i in enumerate(columns):
        name = schema.features[i].name
        column = X[name].to_numpy() if is_dataframe(X) else np.asarray(X)[:, i]
        matrix[:, j] = np.asarray(column, dtype=np.float64)
    return columns, matrix


def _standardized(matrix: np.ndarray, mean: np.ndarray, scale: np.ndarray, a: int, b: int) -> np.ndarray:
    z: np.ndarray = (matrix[a:b].astype(np.float64) - mean) / scale
    z[~np.isfinite(z)] = 0.0  # missing: imputed with the mean
    return z


def _axes(covariance: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Principal axes (rows, largest variance first) and their variances, by SVD of a covariance."""
    _, variances, axes = np.linalg.svd(covariance, hermitian=True)
    return axes, variances


def fit_multivariate(X: Any, schema: InputSchema, *, variance_share: float = VARIANCE_SHARE,
                     folds: int = FOLDS, cap_quantile: float = CAP_QUANTILE) -> ReconstructionModel | None:
    """Fit the PCA of the reference's standardized numeric features and summarise its errors.

    Parameters
    ----------
    X : numpy.ndarray or pandas.DataFrame
        The reference rows (the training data).
    schema : InputSchema
    variance_share : float
        Keep the fewest components that explain at least this share, in (0, 1).
    folds : int
        Folds of the out-of-fold reference errors (in-sample below ``2 * folds`` rows).

    Returns
    -------
    ReconstructionModel or None
        None with fewer than two numeric features, or fewer than three rows.

    Raises
    ------
    ExportError
        ``variance_share`` is not in (0, 1).
    """
    if not 0 < variance_share < 1:
        raise ExportError(f"The 'variance_share' parameter of fit_multivariate must be a float in (0, 1). "
                          f"Got {variance_share!r} instead.")
    columns, matrix = numeric_matrix(X, schema)
    n, d = matrix.shape
    if d < 2 or n < 3:
        return None
    with np.errstate(invalid="ignore"):  # an all-missing column: mean 0, scale 1
        mean = np.nan_to_num(np.nanmean(matrix.astype(np.float64), axis=0))
        std = np.nan_to_num(np.nanstd(matrix.astype(np.float64), axis=0))
    scale = np.where(std > 0, std, 1.0)
    fold_of = np.arange(n) % folds if n >= 2 * folds else np.zeros(n, dtype=np.int64)
    n_folds = int(fold_of.max()) + 1
    # Per-fold sums of z z^T: the whole covariance and each leave-one-fold-out one come from them.
    products = np.zeros((n_folds, d, d))
    counts = np.bincount(fold_of, minlength=n_folds).astype(np.float64)
    for a in range(0, n, _CHUNK):
        z = _standardized(matrix, mean, scale, a, a + _CHUNK)
        for f in range(n_folds):
            part = z[fold_of[a:a + _CHUNK] == f]
            products[f] += part.T @ part
    axes, variances = _axes(products.sum(axis=0) / n)
    total = float(variances.sum())
    if total <= 0:
        return None  # every feature constant: no direction to measure
    shares = np.cumsum(variances) / total
    components = min(int(np.searchsorted(shares, variance_share - 1e-12)) + 1, d - 1)
    errors = np.empty(n)
    fold_axes = [_axes((products.sum(axis=0) - products[f]) / (n - counts[f]))[0] if n_folds > 1 else axes
                 for f in range(n_folds)]
    for a in range(0, n, _CHUNK):
        z = _standardized(matrix, mean, scale, a, a + _CHUNK)
        for f in range(n_folds):
            rows = fold_of[a:a + _CHUNK] == f
            residual = z[rows] @ fold_axes[f][components:].T
            errors[a:a + _CHUNK][rows] = np.sqrt(np.einsum("ij,ij->i", residual, residual))
    cap = float(np.quantile(errors, cap_quantile))
    errors = np.minimum(errors, cap)
    sd = float(errors.std())
    skewness = float(((errors - errors.mean()) ** 3).mean() / sd ** 3) if sd > 0 else 0.0
    return ReconstructionModel(
        features=tuple(schema.features[i].name for i in columns), columns=columns, mean=mean, scale=scale,
        axes=axes, components=components, variance_share=float(variance_share),
        explained=float(shares[components - 1]),
        reference=ReferenceErrors(rows=n, mean=float(errors.mean()), std=sd, skewness=skewness, cap=cap))
