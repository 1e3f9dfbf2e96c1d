"""Predicted labels as small integer codes, for the columnar decision log and the class counts.

The vocabulary starts with the schema's classes, in order, so that classes
``0..k-1`` are their own codes; a label the schema did not list gets the next code.
A label's text is ``str()`` of its canonical value
(:func:`~edge_runtime.serving.schema.canonical_label`): ``"0"``, ``"False"``, ``"churn"``.

Examples
--------
>>> import numpy as np
>>> from edge_runtime.monitoring.label_codes import LabelCodes
>>> codes = LabelCodes(("no", "yes"))
>>> codes.encode(np.array(["yes", "no", "maybe"], dtype=object)).tolist(), codes.vocabulary
([1, 0, 2], ['no', 'yes', 'maybe'])
>>> LabelCodes((0, 1)).encode(np.array([1, 1, 0])).tolist()
[1, 1, 0]
>>> flags = LabelCodes((False, True))
>>> flags.encode(np.array([True, False, True])).tolist(), flags.vocabulary
([1, 0, 1], ['False', 'True'])
>>> flags.canonical_counts({"0": 7, "1": 3})   # a reference written before labels were canonical
{'False': 7, 'True': 3}
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from edge_runtime.serving.results import plain_value
from edge_runtime.serving.schema import canonical_classes

__all__ = ["LabelCodes"]


class LabelCodes:
    """The code of every label seen so far.

    Parameters
    ----------
    classes : sequence
        The schema's classes, which take codes ``0..k-1``.

    Attributes
    ----------
    vocabulary : list of str
        The labels as text, indexed by code (what the log stores).
    code_of : dict
        Label to code; read directly on the single-row path, where a method call costs.
    """

    def __init__(self, classes: Sequence[Any]) -> None:
        classes = canonical_classes(classes)
        self.vocabulary: list[str] = [str(c) for c in classes]
        self.code_of: dict[Any, int] = {c: i for i, c in enumerate(classes)}
        numeric = all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in classes)
        self._values = np.array(classes, dtype=np.float64) if numeric and len(classes) else None
        self._order = np.argsort(self._values) if self._values is not None else None
        self._positions = numeric and list(classes) == list(range(len(classes)))
        self._known = len(classes)
        # Bool classes: the code of False and of True (-1 for one the classes lack).
        self._bool_codes = (np.array([self.code_of.get(False, -1), self.code_of.get(True, -1)], dtype=np.int32)
                            if classes and all(isinstance(c, bool) for c in classes) else None)

    def canonical_counts(self, counts: dict[str, int]) -> dict[str, int]:
        """Label counts keyed as this vocabulary keys them, from counts an older exporter wrote.

        Before labels were canonical, a reference profile counted the graph's labels
        (``"0"``, ``"1"`` for a bool target) and a runtime counted the manifest's
        (``"0.0"``, ``"1.0"`` for a float one); either spelling of a class is counted
        under its canonical text, so that the two sides compare.
        """
        aliases: dict[str, str] = {}
        for label in self.code_of:
            if isinstance(label, bool):
                aliases[str(int(label))] = str(label)
            elif isinstance(label, int):
                aliases[str(float(label))] = str(label)
        out: dict[str, int] = {}
        for key, n in counts.items():
            canonical = aliases.get(key, key) if key not in self.vocabulary else key
            out[canonical] = out.get(canonical, 0) + n
        return out

    def add(self, label: Any) -> int:
        """The code of a label the schema's classes did not list (a new one)."""
        code = len(self.vocabulary)
        self.vocabulary.append(str(label))
        self.code_of[label] = code
        return code

    def code(self, label: Any) -> int:
        """The code of one label."""
        code = self.code_of.get(label)
        return code if code is not None else self.add(label)

    def encode(self, labels: np.ndarray) -> np.ndarray:
        """The codes of a batch's labels (int32), vectorized where the classes are numbers."""
        if self._positions and labels.dtype.kind in "iu" and labels.size:
            # Classes 0..k-1 (most classifiers): the label is its own code.
            if 0 <= labels.min() and labels.max() < self._known:
                return labels.astype(np.int32)
        if self._bool_codes is not None and labels.dtype.kind == "b":
            codes = self._bool_codes[labels.astype(np.intp)]
            if labels.size == 0 or codes.min() >= 0:
                return codes
        values, order = self._values, self._order
        if values is not None and order is not None and labels.dtype.kind in "iuf":
            at = np.minimum(np.searchsorted(values, labels, sorter=order), values.size - 1)
            codes = order[at].astype(np.int32)
            found = values[codes] == labels
            if found.all():
                return codes
        else:
            codes, found = np.zeros(labels.shape[0], dtype=np.int32), np.zeros(labels.shape[0], dtype=bool)
        for i in np.flatnonzero(~found).tolist():
            codes[i] = self.code(plain_value(labels[i]))
        return codes
