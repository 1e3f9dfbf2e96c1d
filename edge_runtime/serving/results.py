"""What a prediction returns.

Examples
--------
>>> import numpy as np
>>> from edge_runtime.serving.results import ModelInfo, Prediction
>>> info = ModelInfo(name="iris", version="1", classes=("setosa", "versicolor"))
>>> p = Prediction("setosa", np.array([0.75, 0.25], dtype=np.float32), info, 4.2)
>>> p.probabilities
{'setosa': 0.75, 'versicolor': 0.25}
>>> p.model_name, p.model_version, p.latency_us
('iris', '1', 4.2)
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from edge_runtime.errors import SchemaError

__all__ = ["BatchResult", "ModelInfo", "Prediction", "plain_value"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelInfo:
    """Identity of the model that answered, shared by all its results."""

    name: str
    version: str
    classes: tuple[Any, ...] = ()


class Prediction:
    """The answer for one row.

    A plain slotted class rather than a dataclass: it is built on every call, and
    a frozen dataclass's ``__init__`` costs about a microsecond more here.

    Attributes
    ----------
    label : object
        Predicted class (classifiers) or value (regressors).
    scores : numpy.ndarray or None
        Class probabilities in the order of ``model.classes`` (classifiers).
    model : ModelInfo
    latency_us : float
        Time spent in :meth:`Runtime.predict` from entry to the model's answer, in
        microseconds (monitoring bookkeeping comes after).
    request_id : int or None
        Key of this decision in the decision log, when monitoring is on.
    deferred : bool
        True when load shedding declined to answer (``shed_mode = "defer"``):
        ``label`` is None; ask again later.
    """

    __slots__ = ("label", "scores", "model", "latency_us", "request_id", "deferred")

    def __init__(self, label: Any, scores: np.ndarray | None, model: ModelInfo,
                 latency_us: float, request_id: int | None = None, deferred: bool = False) -> None:
        self.label = label
        self.scores = scores
        self.model = model
        self.latency_us = latency_us
        self.request_id = request_id
        self.deferred = deferred

    @property
    def probabilities(self) -> dict[Any, float] | None:
        """Class probabilities by class label, or None for a regressor."""
        if self.scores is None:
            return None
        return {c: float(p) for c, p in zip(self.model.classes, self.scores)}

    @property
    def model_name(self) -> str:
        """Name of the bundle that answered."""
        return self.model.name

    @property
    def model_version(self) -> str:
        """Version of the bundle that answered."""
        return self.model.version

    def __repr__(self) -> str:
        return (f"Prediction(label={self.label!r}, probabilities={self.probabilities!r}, "
                f"model='{self.model.name}:{self.model.version}', latency_us={self.latency_us:.1f})")


@dataclass(frozen=True, slots=True, kw_only=True)
class BatchResult:
    """The answers for the good rows of a batch, and the errors of the others.

    Attributes
    ----------
    rows : numpy.ndarray
        Index in the submitted batch of each answered row.
    labels : numpy.ndarray
        Predicted class or value per answered row.
    scores : numpy.ndarray or None
        Class probabilities, one row per answered row (classifiers).
    errors : list of SchemaError
        One per rejected row, with its ``row`` number.
    model : ModelInfo
    latency_us : float
        Time for the whole batch.
    request_ids : numpy.ndarray or None
        Decision-log keys of the answered rows, when monitoring is on.
    """

    rows: np.ndarray
    labels: np.ndarray
    scores: np.ndarray | None
    errors: list[SchemaError]
    model: ModelInfo
    latency_us: float
    request_ids: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.rows.size)

    def records(self) -> Iterator[dict[str, Any]]:
        """Yield one dict per answered row: ``row``, ``prediction`` and ``proba_<label>`` keys."""
        proba_keys = [f"proba_{c}" for c in self.model.classes] if self.scores is not None else []
        for i, row in enumerate(self.rows.tolist()):
            record: dict[str, Any] = {"row": row, "prediction": plain_value(self.labels[i])}
            if self.scores is not None:
                record.update(zip(proba_keys, self.scores[i].tolist()))
            yield record


def plain_value(value: Any) -> Any:
    """A numpy scalar as the Python value it holds (numpy 2 prints ``np.float32(nan)``); others unchanged.

    >>> plain_value(np.int64(3)), plain_value("a")
    (3, 'a')
    """
    return value.item() if isinstance(value, np.generic) else value
