"""``bench``: latency and throughput the way MLPerf LoadGen measures them."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Self

import click

from edge_runtime.bench import (
    SCENARIOS,
    BenchReport,
    BenchSettings,
    OfflineResult,
    ServerRun,
    ServerSearch,
    SingleStreamResult,
    run_benchmark,
)
from edge_runtime.cli.options import (
    config_option,
    format_from_name,
    json_option,
    library_errors,
)
from edge_runtime.io.rows import read_rows

__all__ = ["bench"]


@click.command()
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option("--scenario", type=click.Choice(SCENARIOS), default="single-stream", show_default=True)
@click.option("--duration", type=click.FloatRange(min=0.01), default=10.0, show_default=True,
              help="Minimum measured seconds: of the run; offline: of each batch size, and as long again for raw "
                   "onnxruntime with --compare raw; --find-max-qps: of each probe.")
@click.option("--min-queries", type=click.IntRange(1), default=1024, show_default=True,
              help="Minimum measured queries (single-stream, server). A --find-max-qps probe runs at least 1,000, "
                   "the fewest a p99 needs.")
@click.option("--qps", type=click.FloatRange(min=0.001), default=100.0, show_default=True,
              help="Server scenario: mean Poisson arrival rate (the start of a --find-max-qps search).")
@click.option("--find-max-qps", is_flag=True,
              help="Server scenario: the highest rate at which probes keep meeting the budget. Doubles or halves "
                   "from --qps, then walks a staircase on rates 9% apart (up after 2 probes in a row met, down "
                   "after 2 missed) until the 95% interval of the answer is within 5%. Reports the interval, each "
                   "probe and why it missed; ends within --search-limit. Method: docs/benchmarks.md.")
@click.option("--search-limit", type=click.FloatRange(min=1.0), metavar="SECONDS",
              help="Server --find-max-qps: start no probe that could end later than this into the search, and "
                   "answer from the probes made so far (default: 60 x --duration, at least 120).")
@click.option("--budget-ms", type=click.FloatRange(min=0.0, min_open=True),
              help="Server scenario latency bound (default: [budgets] latency_ms of the config).")
@click.option("--compare", type=click.Choice(["raw"]), help="Also run raw onnxruntime on the same rows.")
@click.option("--batch-sizes", default="1,8,32,128,512", show_default=True, help="Offline scenario sweep.")
@click.option("--input", "input_file", type=click.File("r"), help="Rows to use (CSV or JSON lines); "
              "default: drawn from the bundle's reference profile.")
@config_option()
@json_option("Print the report as JSON.")
@library_errors
def bench(bundle: Path, scenario: str, duration: float, min_queries: int, qps: float, find_max_qps: bool,
          search_limit: float | None, budget_ms: float | None, compare: str | None, batch_sizes: str,
          input_file: Any, config: Path | None, as_json: bool) -> None:
    """Measure latency and throughput the way MLPerf LoadGen does."""
    try:
        sizes = tuple(int(v) for v in batch_sizes.split(",") if v.strip())
    except ValueError as exc:
        raise click.BadParameter(f"--batch-sizes takes integers separated by commas, got {batch_sizes!r}") from exc
    settings = BenchSettings(scenario=scenario, duration_s=duration, min_queries=min_queries, qps=qps,
                             find_max_qps=find_max_qps, budget_ms=budget_ms, compare_raw=compare == "raw",
                             batch_sizes=sizes, warmup_s=min(1.0, duration / 5), search_limit_s=search_limit)
    rows = None
    if input_file is not None:
        fmt = format_from_name(input_file)
        rows = [r for r in read_rows(input_file, fmt) if not isinstance(r, Exception)]
        if not rows:
            raise click.ClickException(f"no usable row in {getattr(input_file, 'name', 'the input')}")
    long_run = ((settings.find_max_qps and scenario == "server") or settings.planned_s >= 3) and not as_json \
        and sys.stderr.isatty()
    with click.progressbar(length=1000, label=f"{scenario}", file=sys.stderr) if long_run else _NoBar() as bar:
        done = [0]

        def progress(fraction: float) -> None:
            step = int(fraction * 1000) - done[0]
            if step > 0:
                bar.update(step)
                done[0] += step

        report = run_benchmark(bundle, settings, config=config, rows=rows, progress=progress)
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2, default=str))
        return
    _print_bench(report)


class _NoBar:
    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def update(self, step: int) -> None:
        return None


def _fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "-"
    return f"{value:,.1f}{unit}" if isinstance(value, float) else f"{value}{unit}"


def _print_bench(report: BenchReport) -> None:
    m, v, model = report.machine, report.versions, report.model
    click.echo(f"edge-runtime bench: {report.scenario} on {model.name} {model.version} "
               f"(model sha256 {model.sha256[:12]}, monitoring {'on' if report.monitoring else 'off'})")
    click.echo(f"machine: {m.cpu}, {m.cores} cores, {m.arch}; python {m.python}, onnxruntime "
               f"{v.onnxruntime}, numpy {v.numpy}, edge-runtime {v.edge_runtime}")
    r = report.results
    if isinstance(r, SingleStreamResult):
        _print_single_stream(r)
    elif isinstance(r, ServerSearch):
        _print_server_search(r)
    elif isinstance(r, ServerRun):
        _print_server_run(r)
    elif isinstance(r, OfflineResult):
        _print_offline(r)
    else:
        click.echo(f"first answer {r.first_answer_ms:.1f} ms after process launch (median of {r.runs}; "
                   f"import {r.import_ms:.1f} ms, load and answer {r.load_and_answer_ms:.1f} ms); "
                   f"rss {r.rss_mb:.1f} MB")
    if report.budget is not None:
        b = report.budget
        click.echo(f"budget state: level {b.level.name.lower()}, violations {dict(b.violations) or 'none'}")


def _print_single_stream(r: SingleStreamResult) -> None:
    t = r.latency
    click.echo(f"queries {r.queries:,}: p50 {_fmt(t.p50_us)} us, p90 {_fmt(t.p90_us)} us, "
               f"p99 {_fmt(t.p99_us)} us, p99.9 {_fmt(t.p99_9_us)} us, max {_fmt(t.max_us)} us")
    click.echo(f"harness overhead {r.harness_overhead_us:.2f} us/query; cpu share {r.usage.cpu_share:.2f}, "
               f"peak rss {r.usage.peak_rss_mb:.1f} MB")
    for layer in r.layers:
        ratio = "-" if layer.p50_vs_raw is None else f"{layer.p50_vs_raw:.2f}"
        click.echo(f"  {layer.name:<40} p50 {_fmt(layer.latency.p50_us)} us  p99 {_fmt(layer.latency.p99_us)} us  "
                   f"{ratio}x raw")
    _print_notes(r.notes)


def _print_server_search(r: ServerSearch) -> None:
    best = r.at_max_qps
    evidence = (f"last met at {best.target_qps:,.0f} qps: p99 {_fmt(best.latency.p99_us)} us, refused {best.refused}"
                if best else "no probe met the budget")
    click.echo(f"max qps holding p99 <= {r.budget_ms} ms: {_fmt(r.max_qps)} ({evidence})")
    if r.interval_qps is not None and r.max_qps is not None:
        low, high = r.interval_qps
        confidence = (f"95% interval {low:,.0f} to {high:,.0f} qps (within {high / r.max_qps - 1:.1%}, aim "
                      f"{r.precision:.0%}) from {len(r.reversals_qps)} reversals")
    else:
        confidence = f"no interval: {len(r.reversals_qps)} reversals"
    noise = (f"; the process waited for a CPU {r.cpu_wait_share:.0%} of the time (other processes)"
             if r.cpu_wait_share is not None else "")
    click.echo(f"confidence: {confidence}; {len(r.probes)} probes in {r.seconds:.1f} s{noise}")
    click.echo("met the budget, by rate: " + ", ".join(f"{rate:,.0f} {met}/{probed}" for rate, met, probed in r.tally()))
    click.echo(f"stopped: {r.stopped}")
    for probe in r.probes:
        verdict = "met" if probe.met_budget else "missed: " + "; ".join(probe.why)
        click.echo(f"  probe {probe.target_qps:,.0f} qps: p99 {_fmt(probe.p99_us)} us, {verdict}")
    _print_notes(r.notes)


def _print_server_run(r: ServerRun) -> None:
    t = r.latency
    if r.budget_ms is None:
        verdict = "no budget set (--budget-ms or [budgets] latency_ms)"
    elif r.met_budget:
        verdict = f"budget {r.budget_ms} ms: met"
    elif r.met_budget is None:
        verdict = f"budget {r.budget_ms} ms: {'; '.join(r.why)}"
    else:
        verdict = f"budget {r.budget_ms} ms: MISSED: {'; '.join(r.why)}"
    click.echo(f"target {r.target_qps:,.1f} qps, achieved {r.achieved_qps:,.1f}; answered "
               f"{r.answered:,}, refused {r.refused:,}")
    click.echo(f"latency from scheduled arrival: p50 {_fmt(t.p50_us)} us, p99 {_fmt(t.p99_us)} us, "
               f"max {_fmt(t.max_us)} us; {verdict}")
    click.echo(f"service time p99 {_fmt(r.service_p99_us)} us; harness wake-up delay p99 "
               f"{_fmt(r.harness_late_p99_us)} us")
    waited = f"; waited {r.cpu_wait_ms:,.1f} ms for a CPU" if r.cpu_wait_ms is not None else ""
    click.echo(f"cpu share {r.usage.cpu_share:.2f}, peak rss {r.usage.peak_rss_mb:.1f} MB{waited}")
    _print_notes(r.notes)


def _print_offline(r: OfflineResult) -> None:
    for entry in r.sweep:
        extra = (f", raw {entry.raw_rows_per_s:,.0f} rows/s ({entry.runtime_vs_raw:.0%})"
                 if entry.raw_rows_per_s is not None else "")
        click.echo(f"  batch {entry.batch:>5}: {entry.runtime_rows_per_s:,.0f} rows/s{extra}")
    click.echo(f"best: batch {r.best_batch} at {r.best_rows_per_s:,.0f} rows/s; cpu share "
               f"{r.usage.cpu_share:.2f}, peak rss {r.usage.peak_rss_mb:.1f} MB")


def _print_notes(notes: tuple[str, ...]) -> None:
    for note in notes:
        click.echo(f"note: {note}")
