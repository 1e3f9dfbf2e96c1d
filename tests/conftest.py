"""Shared fixtures: small real bundles built once per test session."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_breast_cancer, load_diabetes
from sklearn.ensemble import RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from converters import export


def mixed_frame(n: int = 600, seed: int = 0) -> tuple[pd.DataFrame, pd.Series]:
    """A customer table mixing numeric (with gaps) and string-categorical columns."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "age": rng.normal(40, 10, n).round(1),
        "income": rng.lognormal(10, 0.5, n).round(2),
        "visits": rng.integers(0, 40, n),  # numeric: more distinct values than counted features have
        "city": rng.choice(["paris", "lyon", "nice"], n),
        "plan": rng.choice(["basic", "pro"], n),
    })
    frame.loc[rng.random(n) < 0.05, "age"] = np.nan
    churn = (frame["age"].fillna(40) > 42) ^ (frame["city"] == "nice")
    return frame, churn.map({False: "stay", True: "churn"}).rename("churn")


def mixed_pipeline(classifier: Any) -> Pipeline:
    pre = ColumnTransformer([
        ("num", make_pipeline(SimpleImputer(), StandardScaler()), ["age", "income", "visits"]),
        ("cat", OneHotEncoder(handle_unknown="ignore"), ["city", "plan"]),
    ])
    return Pipeline([("pre", pre), ("clf", classifier)])


@pytest.fixture(scope="session")
def cancer_data() -> tuple[pd.DataFrame, pd.Series]:
    data = load_breast_cancer(as_frame=True)
    return data.data, data.target


@pytest.fixture(scope="session")
def cancer_model(cancer_data: Any) -> Any:
    X, y = cancer_data
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(X, y)


@pytest.fixture(scope="session")
def cancer_bundle(tmp_path_factory: pytest.TempPathFactory, cancer_data: Any, cancer_model: Any) -> Path:
    """Tensor layout, integer classes, 30 numeric features."""
    X, y = cancer_data
    out = tmp_path_factory.mktemp("bundles") / "cancer"
    return export(cancer_model, X, y, name="cancer", version="1.0", out_dir=out).path


@pytest.fixture(scope="session")
def mixed_data() -> tuple[pd.DataFrame, pd.Series]:
    return mixed_frame()


@pytest.fixture(scope="session")
def mixed_model(mixed_data: Any) -> Pipeline:
    X, y = mixed_data
    return mixed_pipeline(LogisticRegression(max_iter=1000)).fit(X, y)


@pytest.fixture(scope="session")
def mixed_bundle(tmp_path_factory: pytest.TempPathFactory, mixed_data: Any, mixed_model: Any) -> Path:
    """Columns layout, string classes, NaN allowed in 'age'."""
    X, y = mixed_data
    out = tmp_path_factory.mktemp("bundles") / "mixed"
    return export(mixed_model, X, y, name="churn", version="2.1", out_dir=out).path


@pytest.fixture(scope="session")
def string_class_bundle(tmp_path_factory: pytest.TempPathFactory, cancer_data: Any) -> Path:
    """Tensor layout with string labels (no bindable label output)."""
    X, y = cancer_data
    labels = y.map({0: "malignant", 1: "benign"})
    model = RandomForestClassifier(n_estimators=20, random_state=0).fit(X, labels)
    out = tmp_path_factory.mktemp("bundles") / "forest"
    return export(model, X, labels, name="forest", version="1", out_dir=out).path


@pytest.fixture(scope="session")
def regression_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    X, y = load_diabetes(return_X_y=True)
    model = Ridge().fit(X, y)
    out = tmp_path_factory.mktemp("bundles") / "diabetes"
    return export(model, X, y, name="diabetes", version="1", out_dir=out).path


@pytest.fixture
def copy_bundle(tmp_path: Path):
    """Copy a bundle into this test's own directory, to alter it freely."""
    import shutil

    def _copy(source: Path) -> Path:
        target = tmp_path / source.name
        shutil.copytree(source, target)
        return target

    return _copy


@pytest.fixture(scope="session")
def monitored_window(cancer_bundle: Path, cancer_data: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A real closed 200-row window of the 30-feature cancer model (profile and verdicts), as stored."""
    from edge_runtime import Runtime
    from edge_runtime.monitoring.store import MonitorStore

    X, _ = cancer_data
    db = tmp_path_factory.mktemp("window") / "m.db"
    with Runtime(cancer_bundle, db=db, window_rows=200) as rt:
        rt.predict_batch(X.iloc[:200].to_numpy())
    store = MonitorStore(db, read_only=True)
    try:
        row = store.windows(with_profile=True)[0]
        row["verdicts"] = [{k: v for k, v in r.items() if k != "window_seq"} for r in store.drift_results(row["seq"])]
        row["database_id"] = store.database_id
    finally:
        store.close()
    return row


# Real servers (PostgreSQL, mosquitto): started once per session on a free loopback port.
from tests.servers import (  # noqa: E402, F401
    fleet_store_url,
    mosquitto,
    mosquitto_factory,
    postgres_server,
)
