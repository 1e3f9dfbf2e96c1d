"""The decision log's block format: decisions written together, one little-endian array per field.

A field that is the same for every decision of a block (the time and the
per-row latency of one batch) is stored once, and prediction codes take one
byte each while the vocabulary has at most 256 labels: readers tell these by
the field's length, so blocks written before read as they did.

A row per decision cost ~1.2 µs to insert here (SQLite's own per-row cost), which
is most of a 512-row batch of a small model; a block row costs ~25 µs whatever its
length. Writers build a :class:`DecisionBlock`; readers expand a stored block back
into one dict per decision with :func:`expand_block`.

Examples
--------
>>> import numpy as np
>>> block = DecisionBlock(ids=np.array([7, 8]), ts=np.array([1.7e9, 1.7e9]), model_id=1,
...                       latency_us=np.array([5.0, 6.0]), codes=np.array([1, 0]), vocabulary=("no", "yes"),
...                       scores=np.array([0.9, 0.8]), hashes=np.array([1, 2]))
>>> record = block.record()
>>> record[:3], record[6] is None   # ids are implied when contiguous
((7, 8, 2), True)
>>> [d["prediction"] for d in expand_block(record, {1: ("m", "1")})]
['yes', 'no']
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["BLOCK_COLUMNS", "DecisionBlock", "expand_block"]

# The columns of a ``decision_blocks`` row, in insert and select order.
BLOCK_COLUMNS = ("first_id", "last_id", "rows", "ts_first", "ts_last", "model_id", "ids", "ts", "latency_us",
                 "predictions", "vocabulary", "scores", "input_hashes")


@dataclass(frozen=True, slots=True)
class DecisionBlock:
    """Decisions written together, one array per field (``n`` rows each).

    Attributes
    ----------
    ids : numpy.ndarray
        Request ids, ascending.
    ts : numpy.ndarray
        Unix times.
    model_id : int
        Id in the ``models`` table of the model that answered all of them.
    latency_us : numpy.ndarray
    codes : numpy.ndarray
        Index of each prediction in ``vocabulary`` (classifiers).
    vocabulary : tuple of str or None
        The labels the codes index; None for regressors, whose prediction is the score.
    scores : numpy.ndarray
        Probability of the predicted class, or the predicted value.
    hashes : numpy.ndarray
        64-bit input hashes (signed).
    """

    ids: np.ndarray
    ts: np.ndarray
    model_id: int
    latency_us: np.ndarray
    codes: np.ndarray | None
    vocabulary: tuple[str, ...] | None
    scores: np.ndarray
    hashes: np.ndarray

    def __len__(self) -> int:
        return int(self.ids.size)

    def newest(self, k: int) -> DecisionBlock:
        """The block's last ``k`` decisions (all of them when it holds fewer)."""
        if k >= len(self):
            return self
        return DecisionBlock(ids=self.ids[-k:], ts=self.ts[-k:], model_id=self.model_id,
                             latency_us=self.latency_us[-k:],
                             codes=None if self.codes is None else self.codes[-k:], vocabulary=self.vocabulary,
                             scores=self.scores[-k:], hashes=self.hashes[-k:])

    def record(self) -> tuple[Any, ...]:
        """The block as a ``decision_blocks`` row, in insert order."""
        ids = np.asarray(self.ids, dtype="<i8")
        first, last = int(ids[0]), int(ids[-1])
        contiguous = last - first + 1 == ids.size  # ids are ascending and unique
        small = self.vocabulary is not None and len(self.vocabulary) <= 256
        return (first, last, int(ids.size), float(self.ts[0]), float(self.ts[-1]), self.model_id,
                None if contiguous else ids.tobytes(), _constant(np.asarray(self.ts, dtype="<f8")).tobytes(),
                _constant(np.asarray(self.latency_us, dtype="<f4")).tobytes(),
                None if self.codes is None else np.asarray(self.codes, dtype="<u1" if small else "<i4").tobytes(),
                None if self.vocabulary is None else _vocabulary_json(self.vocabulary),
                np.asarray(self.scores, dtype="<f4").tobytes(), np.asarray(self.hashes, dtype="<i8").tobytes())



@functools.lru_cache(maxsize=16)  # one vocabulary per model, the same for every block
def _vocabulary_json(vocabulary: tuple[str, ...]) -> str:
    return json.dumps(list(vocabulary))


def _constant(values: np.ndarray) -> np.ndarray:
    """The first value alone when all are the same (one batch's time or latency per row), else all."""
    return values[:1] if values.size > 1 and (values == values[0]).all() else values


def _field(data: bytes, dtype: str, n: int) -> np.ndarray:
    """A stored field of ``n`` decisions: one value stands for all of them."""
    values = np.frombuffer(data, dtype=dtype)
    return np.repeat(values, n) if values.size == 1 and n > 1 else values


def expand_block(row: Sequence[Any], models: dict[int, tuple[str, str]]) -> Iterator[dict[str, Any]]:
    """The decisions of one ``decision_blocks`` row (selected as :data:`BLOCK_COLUMNS`), oldest first."""
    (first, last, n, _, _, model_id, ids, ts, latency, predictions, vocabulary, scores, hashes) = row
    id_list = (np.frombuffer(ids, dtype="<i8").tolist() if ids is not None else list(range(first, last + 1)))
    score_list = np.frombuffer(scores, dtype="<f4").astype(np.float64).tolist()
    if predictions is not None:
        words = json.loads(vocabulary)
        codes = np.frombuffer(predictions, dtype="<u1" if len(predictions) == n else "<i4")
        labels = [words[c] for c in codes.tolist()]
    else:
        labels = [str(v) for v in score_list]
    name, version = models.get(model_id, ("?", "?"))
    for request_id, t, lat, label, score, digest in zip(
            id_list, _field(ts, "<f8", n).tolist(),
            _field(latency, "<f4", n).astype(np.float64).tolist(), labels, score_list,
            np.frombuffer(hashes, dtype="<i8").tolist()):
        yield {"request_id": request_id, "ts": t, "model": name, "version": version, "latency_us": lat,
               "prediction": label, "score": score, "input_hash": f"{digest & 0xFFFFFFFFFFFFFFFF:016x}"}

