"""Monitoring: drift sketches, windows, the decision log in SQLite, and reports read from it.

Lower modules first: ``sketches`` (KLL and category counts), ``data_profile`` (a profile
of many features), ``drift`` (verdicts of a window against the reference),
``decision_log`` (the columnar block format), ``migrations`` and ``store`` (the only
module that talks SQL), ``worker`` (the batch thread), ``windows`` (the open window),
``monitor`` (what the Runtime calls on every answer), ``reports`` (the public read API).

Nothing is imported here: sqlite-utils and the sketches cost start-up time that only
runtimes that monitor should pay.
"""

__all__: list[str] = []
