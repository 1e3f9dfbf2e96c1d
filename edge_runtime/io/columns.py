"""Matching an input's columns (a CSV header, or a JSON row's keys) with the model's features.

Every missing and every extra column is named at once, in one line, with a hint
where an extra column looks like a missing feature (a case or spelling slip).

Examples
--------
>>> from edge_runtime.io.columns import match_columns
>>> match = match_columns(["Age", "income", "churn"], ["age", "income"])
>>> match.missing, match.extra
(('age',), ('Age', 'churn'))
>>> print(match.describe())
missing 'age'; extra 'Age' (did you mean 'age'?), 'churn'
>>> match_columns(["age", "income", "churn"], ["age", "income"], ignore_extra=True).ok
True
"""

from __future__ import annotations

import difflib
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = ["ColumnMatch", "match_columns", "shown_name"]

# Names listed in one message at most, and the longest name shown whole: a hostile
# header of 100,000 columns, or of one column of 100 KB, still gets a one-line message.
_NAMES_SHOWN = 20
_NAME_CHARS = 60
# difflib's quadratic matching is skipped for names longer than this.
_HINT_CHARS = 200


@dataclass(frozen=True, slots=True)
class ColumnMatch:
    """How an input's columns line up with the model's features.

    Attributes
    ----------
    missing : tuple of str
        Features the input lacks, in model order.
    extra : tuple of str
        Input columns that are no feature and were not dropped, in input order.
    duplicated : tuple of str
        Column names that appear more than once.
    dropped_features : tuple of str
        Features the caller asked to drop (so they are missing too).
    ignore_extra : bool
        Extra columns are left out rather than refused.
    """

    missing: tuple[str, ...]
    extra: tuple[str, ...]
    duplicated: tuple[str, ...]
    dropped_features: tuple[str, ...]
    ignore_extra: bool

    @property
    def ok(self) -> bool:
        """True when the input can be read: nothing missing or repeated, and no extra column unless ignored."""
        return not (self.missing or self.duplicated or (self.extra and not self.ignore_extra))

    def describe(self) -> str:
        """What does not match, in one line: every name, with near-name hints."""
        parts = []
        if self.missing:
            parts.append("missing " + _names(self.missing, {name: "dropped" for name in self.dropped_features}))
        if self.extra and not self.ignore_extra:
            hints = _hints(self.extra, self.missing)
            parts.append("extra "
                         + _names(self.extra, {k: f"did you mean {shown_name(v)}?" for k, v in hints.items()}))
        if self.duplicated:
            parts.append("repeated " + _names(self.duplicated, {}))
        return "; ".join(parts)


def match_columns(columns: Iterable[str], features: Sequence[str], *, drop: Iterable[str] = (),
                  ignore_extra: bool = False) -> ColumnMatch:
    """Compare an input's column names with the model's features.

    Parameters
    ----------
    columns : iterable of str
        The input's names, in input order.
    features : sequence of str
        The model's features.
    drop : iterable of str
        Columns the caller leaves out (an id or a target).
    ignore_extra : bool
        Leave out every column that is not a feature, instead of refusing it.
    """
    names = list(columns)
    dropped = set(drop)
    wanted = set(features)
    present = set(names)
    counts = Counter(names)
    return ColumnMatch(
        missing=tuple(f for f in features if f not in present or f in dropped),
        extra=tuple(n for n in dict.fromkeys(names) if n not in wanted and n not in dropped),
        duplicated=tuple(n for n, c in counts.items() if c > 1 and n in wanted and n not in dropped),
        dropped_features=tuple(f for f in features if f in dropped),
        ignore_extra=ignore_extra,
    )


def _hints(extra: Sequence[str], missing: Sequence[str]) -> dict[str, str]:
    """For each extra name that looks like a missing feature (case aside), that feature."""
    if not missing:
        return {}
    by_folded = {name.casefold(): name for name in missing if len(name) <= _HINT_CHARS}
    hints = {}
    for name in extra[:_NAMES_SHOWN]:
        if len(name) > _HINT_CHARS:
            continue
        close = difflib.get_close_matches(name.casefold(), list(by_folded), n=1, cutoff=0.6)
        if close:
            hints[name] = by_folded[close[0]]
    return hints


def _names(names: Sequence[str], notes: dict[str, str]) -> str:
    """``'a', 'b' (note), ...`` with at most _NAMES_SHOWN names, each cut short when long."""
    shown = [f"{shown_name(n)} ({notes[n]})" if n in notes else shown_name(n) for n in names[:_NAMES_SHOWN]]
    if len(names) > _NAMES_SHOWN:
        shown.append(f"and {len(names) - _NAMES_SHOWN:,} more")
    return ", ".join(shown)


def shown_name(name: str) -> str:
    """A column name quoted for a message, cut short when long."""
    if len(name) <= _NAME_CHARS:
        return repr(name)
    return f"{name[:_NAME_CHARS]!r}… ({len(name):,} characters)"
