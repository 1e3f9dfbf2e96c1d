"""Stored windows merged into their base buckets in memory, and written to the store now and then.

Ingest stores each window at once (its group commit is what a 200 answer waits for),
but rewriting a bucket of ~400 KB per commit cost more than everything else a
window needs. So :class:`BucketFolder` merges each stored window's profile (read and
checked by ingest already) into an in-memory copy of its bucket, and writes those
with :meth:`FleetStore.fold_buckets` once ``max_windows`` have come or ``max_seconds``
have passed, and when it is closed.

Nothing is lost or counted twice in between: a window's row says whether it is in
its stored bucket yet, ``bucket_profiles`` adds those that are not, and a window
whose collector stopped before folding it is folded from its row by the next
collector to write, once it is ``orphan_seconds`` old.

Examples
--------
>>> import tempfile
>>> from collector.stores import open_store
>>> store = open_store(f"sqlite:///{tempfile.mkdtemp()}/fleet.db")
>>> folder = BucketFolder(store, max_windows=1000)
>>> folder.add(1, "ab" * 32, 600.0, None)  # a window whose profile could not be read: no merge
>>> folder.pending
1
>>> folder.close()
>>> folder.pending
0
>>> store.close()
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from collector.errors import FleetStoreError
from collector.stores.base import FleetStore
from collector.stores.bucketing import BASE_BUCKET_SECONDS, BucketFold, bucket_start, empty_like
from edge_runtime.errors import ConfigError
from edge_runtime.monitoring.data_profile import Profile

__all__ = ["BucketFolder"]

_log = logging.getLogger(__name__)


@dataclass
class _OpenBucket:
    profile: Profile | None = None
    window_ids: list[int] = field(default_factory=list)
    merged: int = 0


class BucketFolder:
    """Merges stored windows into their base buckets in memory; writes them in one transaction now and then.

    Parameters
    ----------
    store : FleetStore
        Where the windows are stored and the buckets written.
    max_windows : int
        Write once this many windows are held (default 2,048: about 2 s of a busy collector).
    max_seconds : float
        Write at the first window this long after the last write (default 1 s).
    max_buckets : int
        Write once this many buckets are open (default 64, ~25 MB at 30 features): a
        device sending a week of backlog spreads its windows over many buckets.
    orphan_seconds : float
        Each write also folds windows received this long ago and still outside their
        buckets (their collector stopped first).
    clock : callable
        The collector's wall clock, as ingest's (``received_at``); tests pass a fake one.
    """

    def __init__(self, store: FleetStore, *, max_windows: int = 2048, max_seconds: float = 1.0,
                 max_buckets: int = 64, orphan_seconds: float = 600.0, clock: Callable[[], float] = time.time) -> None:
        for name, value in (("max_windows", max_windows), ("max_buckets", max_buckets)):
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"The '{name}' parameter of BucketFolder must be an int >= 1. "
                                  f"Got {value!r} instead.")
        self.store = store
        self.max_windows = max_windows
        self.max_buckets = max_buckets
        self.max_seconds = max_seconds
        self.orphan_seconds = orphan_seconds
        self._clock = clock
        self._lock = threading.Lock()  # the open buckets
        self._writing = threading.Lock()  # one write at a time, in order
        self._open: dict[tuple[str, float], _OpenBucket] = {}
        self._pending = 0
        self._last_write = time.monotonic()

    @property
    def pending(self) -> int:
        """Windows held in memory, not written to their stored buckets yet."""
        return self._pending

    def add(self, window_id: int, model_sha256: str, corrected_closed_at: float, profile: Profile | None) -> None:
        """Merge one stored window (its id, model, close on the collector's clock, profile) into its open bucket.

        A profile that is None or whose features differ from the bucket's is not merged,
        but the window is still written as folded: it joins no bucket, as a store leaves out
        a window whose profile it cannot read.
        """
        key = (model_sha256, bucket_start(corrected_closed_at, BASE_BUCKET_SECONDS))
        with self._lock:
            bucket = self._open.setdefault(key, _OpenBucket())
            if profile is not None:
                if bucket.profile is None:
                    bucket.profile = empty_like(profile)
                if list(profile.features) == list(bucket.profile.features):
                    try:
                        bucket.profile.merge(profile)
                        bucket.merged += 1
                    except ValueError:  # sections that do not fit: left out, as fold_into_bucket does
                        pass
            bucket.window_ids.append(window_id)
            self._pending += 1
            due = (self._pending >= self.max_windows or len(self._open) >= self.max_buckets
                   or time.monotonic() - self._last_write >= self.max_seconds)
        if due:
            self.flush()

    def flush(self) -> None:
        """Write every open bucket now (and fold the orphans). A store failure is logged, not raised:
        the windows are stored, and stay readable through ``bucket_profiles`` until a later write."""
        with self._writing:
            with self._lock:
                taken, self._open, self._pending = self._open, {}, 0
                self._last_write = time.monotonic()
            folds = [BucketFold(model_sha256=sha, start=start, profile=bucket.profile,
                                window_ids=tuple(bucket.window_ids), merged=bucket.merged)
                     for (sha, start), bucket in taken.items()]
            try:
                self.store.fold_buckets(folds, orphans_before=self._clock() - self.orphan_seconds)
            except FleetStoreError as exc:
                _log.warning("base buckets not written (%d windows stay unfolded until a later write): %s",
                             sum(len(f.window_ids) for f in folds), exc)

    def close(self) -> None:
        """Write what is held."""
        self.flush()
