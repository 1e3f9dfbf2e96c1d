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

With ``--effects``, it prints instead how much the mean error of a 50,000-row
window rises under shifts of known size, on 30 features with three shared
factors (what the default effect floor, ``multivariate_drift = 0.05``, was
chosen from).

Run: ``python benchmarks/multivariate_false_alarms.py [--features 10] [--seed 7] [--effects]``
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


def effects(seed: int) -> None:
    """Relative rise of a 50,000-row window's mean error under shifts of known size."""
    rng = np.random.default_rng(seed)
    d = 30
    loadings = np.random.default_rng(1).normal(size=(3, d))
    spread = np.sqrt((loadings ** 2).sum(axis=0) + 1)

    def rows(n: int, shift: float = 0.0, shifted: tuple[int, ...] = (), flipped: tuple[int, ...] = (),
             shrink: float = 1.0) -> np.ndarray:
        signs = np.ones(d)
        signs[list(flipped)] = -1  # a feature's correlations with all others change sign
        # Shrinking the shared part and growing the noise keeps every marginal.
        noise = np.sqrt(1 + (1 - shrink ** 2) * (loadings ** 2).sum(axis=0))
        X: np.ndarray = shrink * rng.normal(size=(n, 3)) @ (loadings * signs) + rng.normal(size=(n, d)) * noise
        X[:, list(shifted)] += shift * spread[list(shifted)]
        return X

    schema = InputSchema(features=tuple(FeatureSpec(name=f"f{i}") for i in range(d)))
    model = fit_multivariate(rows(50_000), schema)
    assert model is not None
    print(f"30 features, {model.components} components kept ({model.explained:.3f} of the variance)")
    cases = [("no change", rows(50_000)),
             ("1 feature, KS ~0.03 (0.075 sd)", rows(50_000, 0.075, (0,))),
             ("1 feature, KS ~0.05 (0.125 sd)", rows(50_000, 0.125, (0,))),
             ("all 30, KS ~0.03", rows(50_000, 0.075, tuple(range(d)))),
             ("all 30, KS ~0.05", rows(50_000, 0.125, tuple(range(d)))),
             ("all 30, KS ~0.1 (0.25 sd)", rows(50_000, 0.25, tuple(range(d)))),
             ("1 feature's correlations flipped", rows(50_000, flipped=(0,))),
             ("3 features' correlations flipped", rows(50_000, flipped=(0, 1, 2))),
             ("every correlation x0.81, marginals kept", rows(50_000, shrink=0.9))]
    for name, X in cases:
        rise = float(model.errors(X.astype(np.float32)).mean()) / model.reference.mean - 1
        print(f"{name:42s} {rise:+.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--features", type=int, default=10)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--effects", action="store_true")
    args = parser.parse_args()
    if args.effects:
        effects(args.seed)
        return
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
