"""False alarms of the multivariate signal on stationary data, by feature distribution and window size.

A PCA is fitted (``converters.multivariate.fit_multivariate``) on 20,000
reference rows of one of four synthetic sets; then windows of 100 rows
(100,000 windows) and of 1,000 rows (4,000 windows) are drawn from the same
distribution, and the share of windows whose mean reconstruction error passes
``critical_error`` at alpha is printed as a multiple of alpha (1.00x: exactly
calibrated; below: conservative). No effect floor: the critical value alone.

- ``gauss``: three shared factors plus noise;
- ``lognormal``: the exponential of the same (skewed, heavy right tails);
- ``poisson``: counts with a shared random rate (ties);
- ``heavy``: Student-t(3) noise on a shared Student-t(3) factor.

Run: ``python benchmarks/multivariate_false_alarms.py [--features 10] [--seed 7]``
"""

from __future__ import annotations

import argparse

import numpy as np

from converters.multivariate import fit_multivariate
from edge_runtime.monitoring.multivariate import critical_error
from edge_runtime.serving.schema import FeatureSpec, InputSchema

SETS = ("gauss", "lognormal", "poisson", "heavy")
ALPHAS = (0.01, 0.001, 0.0002)


def draw(kind: str, rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    loadings = np.random.default_rng(1).normal(size=(3, d))  # the same for reference and live rows
    if kind == "gauss":
        return rng.normal(size=(n, 3)) @ loadings + 0.5 * rng.normal(size=(n, d))
    if kind == "lognormal":
        return np.exp(rng.normal(size=(n, 3)) @ loadings * 0.5 + 0.3 * rng.normal(size=(n, d)))
    if kind == "poisson":
        rate = np.exp(rng.normal(size=(n, 1)) * 0.5 + 1)
        return rng.poisson(rate * np.ones((1, d))).astype(float)
    return rng.standard_t(3, size=(n, d)) + rng.standard_t(3, size=(n, 1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--features", type=int, default=10)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    d = args.features
    schema = InputSchema(features=tuple(FeatureSpec(name=f"f{i}") for i in range(d)))
    for kind in SETS:
        model = fit_multivariate(draw(kind, rng, 20_000, d), schema)
        assert model is not None
        cells = [f"{kind:9s} k={model.components:<2d} skew={model.reference.skewness:5.2f}"]
        for rows, windows in ((100, 100_000), (1000, 4000)):
            per_chunk = 2_000_000 // rows
            means = []
            for start in range(0, windows, per_chunk):
                count = min(per_chunk, windows - start)
                errors = model.errors(draw(kind, rng, count * rows, d).astype(np.float32))
                means.append(errors.astype(np.float64).reshape(count, rows).mean(axis=1))
            window_means = np.concatenate(means)
            for alpha in ALPHAS:
                rate = float(np.mean(window_means > critical_error(model.reference, rows, alpha)))
                cells.append(f"m={rows} a={alpha}: {rate / alpha:.2f}x")
        print(" | ".join(cells), flush=True)


if __name__ == "__main__":
    main()
