"""The ``edge-runtime`` command line: parse, call the public API, format.

Library errors become one ``Error: ...`` line and exit status 1 here, at this one
boundary; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import datetime
import functools
import json
import os
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, TypeVar

import click

from edge_runtime import __version__
from edge_runtime.serving.bundle import check_files, read_manifest
from edge_runtime.bench import SCENARIOS, BenchSettings, run_benchmark
from edge_runtime.errors import EdgeRuntimeError, OverloadError
from edge_runtime.runtime import Runtime
from edge_runtime.io.rows import FORMATS, PredictionWriter, batched, read_rows

__all__ = ["main"]

F = TypeVar("F", bound=Callable[..., Any])
_MAX_ROW_ERRORS_SHOWN = 20


def _library_errors(func: F) -> F:
    """Turn library errors into click's one-line ``Error: ...`` unless --debug is on."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except BrokenPipeError:
            # The reader went away (`... | head`): not an error worth a message.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            sys.exit(1)
        except (EdgeRuntimeError, OSError) as exc:
            if click.get_current_context().find_root().params.get("debug"):
                raise
            raise click.ClickException(str(exc)) from exc

    return wrapper  # type: ignore[return-value]


@click.group()
@click.version_option(__version__, prog_name="edge-runtime")
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
def main(debug: bool) -> None:
    """Run classic ML models on small CPU-only devices, and watch them there."""


# ---------------------------------------------------------------- export side
@main.command()
@click.argument("model_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--train-data", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="CSV of the training data, with a header row.")
@click.option("--target", help="Column of the CSV holding the target; dropped before profiling.")
@click.option("--validation-data", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="CSV of held-out rows for the parity check (default: a sample of the training data).")
@click.option("--name", required=True, help="Model name recorded in the bundle.")
@click.option("--version", "model_version", required=True, help="Model version recorded in the bundle.")
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path), help="Bundle directory to create.")
@click.option("--min-agreement", type=click.FloatRange(0, 1), default=0.99, show_default=True,
              help="Fail below this share of rows agreeing with the original model.")
@click.option("--overwrite", is_flag=True, help="Replace an existing bundle.")
@click.option("--quantize", is_flag=True, help="Also write an int8 variant (MLPs), the fallback for budgets.")
@_library_errors
def export(model_file: Path, train_data: Path, target: str | None, validation_data: Path | None,
           name: str, model_version: str, out_dir: Path, min_agreement: float, overwrite: bool,
           quantize: bool) -> None:
    """Export a pickled or joblib-saved scikit-learn model to a bundle.

    MODEL_FILE is unpickled: only export files you trust.
    """
    import joblib
    import pandas as pd

    from converters import ParityPolicy
    from converters import export as export_model

    model = joblib.load(model_file)
    frame = pd.read_csv(train_data)
    y = None
    if target is not None:
        if target not in frame.columns:
            raise click.ClickException(f"--target column '{target}' is not in {train_data}")
        y = frame.pop(target)
    X_val = None
    if validation_data is not None:
        X_val = pd.read_csv(validation_data)
        X_val = X_val.drop(columns=[target]) if target in X_val.columns else X_val
    result = export_model(model, frame, y, name=name, version=model_version, out_dir=out_dir, X_val=X_val,
                          parity=ParityPolicy(min_agreement=min_agreement), overwrite=overwrite,
                          quantize=quantize)
    parity = result.parity or {}
    click.echo(f"wrote {result.path}")
    click.echo(f"parity: agreement {parity.get('agreement', 0):.4f}, max abs diff "
               f"{parity.get('max_abs_diff')}, {parity.get('rows_beyond_tolerance')} of "
               f"{parity.get('rows')} rows beyond tolerance")
    variants = result.manifest.variants
    if quantize:
        int8 = variants.get("int8")
        click.echo(f"int8 variant: label agreement {int8['parity']['agreement']:.4f}, {int8['bytes']:,} bytes"
                   if int8 else variants.get("note", "no int8 variant"))


@main.command("bundle")
@click.argument("onnx_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--schema", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="JSON file: task, classes, features (see README).")
@click.option("--name", required=True, help="Model name recorded in the bundle.")
@click.option("--version", "model_version", required=True, help="Model version recorded in the bundle.")
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path), help="Bundle directory to create.")
@click.option("--reference-data", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="CSV of training data to profile (needs pandas).")
@click.option("--overwrite", is_flag=True, help="Replace an existing bundle.")
@_library_errors
def bundle_command(onnx_file: Path, schema: Path, name: str, model_version: str, out_dir: Path,
                   reference_data: Path | None, overwrite: bool) -> None:
    """Wrap an ONNX file exported elsewhere, plus a JSON schema, into a bundle."""
    from converters import bundle_onnx

    reference = None
    if reference_data is not None:
        import pandas as pd

        reference = pd.read_csv(reference_data)
    result = bundle_onnx(onnx_file, schema, name=name, version=model_version, out_dir=out_dir,
                         reference_data=reference, overwrite=overwrite)
    click.echo(f"wrote {result.path}")


# ---------------------------------------------------------------- device side
@main.command()
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the manifest and verification as JSON.")
@_library_errors
def inspect(bundle: Path, as_json: bool) -> None:
    """Show a bundle's manifest and verify every file's checksum."""
    manifest = read_manifest(bundle)
    checks = check_files(bundle, manifest)
    ok = all(c.ok for c in checks)
    if as_json:
        payload = {"manifest": manifest.to_dict(),
                   "verification": {"ok": ok, "files": [{"name": c.name, "ok": c.ok, "reason": c.reason}
                                                        for c in checks]}}
        click.echo(json.dumps(payload, indent=2))
    else:
        m = manifest
        click.echo(f"{m.name} {m.version}  (format {m.format_version}, created {m.created_at})")
        click.echo(f"task: {m.output_schema.task.value}"
                   + (f", classes: {list(m.output_schema.classes)}" if m.output_schema.classes else ""))
        click.echo(f"inputs ({m.input_schema.layout.value} layout): {len(m.input_schema.features)} features")
        for f in m.input_schema.features:
            detail = (f"{len(f.categories)} categories" if f.kind.value == "categorical"
                      else f"range [{f.minimum}, {f.maximum}]")
            click.echo(f"  {f.name}: {f.kind.value}, {detail}" + (", missing allowed" if f.allows_missing else ""))
        producer = m.producer
        click.echo("producer: " + ", ".join(f"{k} {v}" for k, v in producer.items() if k != "opset"))
        if m.parity:
            p = m.parity
            click.echo(f"parity: passed={p.get('passed')}, agreement={p.get('agreement')}, "
                       f"max_abs_diff={p.get('max_abs_diff')}, rows_beyond_tolerance="
                       f"{p.get('rows_beyond_tolerance')} of {p.get('rows')} ({p.get('source')})")
        for c in checks:
            click.echo(f"  [{'ok' if c.ok else 'FAILED'}] {c.name}" + ("" if c.ok else f": {c.reason}"))
    if not ok:
        bad = next(c for c in checks if not c.ok)
        raise click.ClickException(f"bundle file '{bad.name}' {bad.reason}")


@main.command()
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option("--input", "input_file", required=True, type=click.File("r"),
              help="CSV with a header row, or JSON lines; '-' reads standard input.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), help="Input format (default: from the file name, else csv).")
@click.option("--output", type=click.File("w"), default="-", help="Where predictions go (default: standard output).")
@click.option("--config", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="Device config (TOML).")
@click.option("--drop", multiple=True, help="Input column to ignore (an id or target); repeatable.")
@click.option("--batch-size", type=click.IntRange(1), default=1024, show_default=True)
@click.option("--db", type=click.Path(dir_okay=False, path_type=Path),
              help="Monitoring database (SQLite): turns on drift monitoring and the decision log.")
@click.option("--window-rows", type=click.IntRange(1), help="Rows per monitoring window (default 5000).")
@_library_errors
def predict(bundle: Path, input_file: Any, fmt: str | None, output: Any, config: Path | None,
            drop: tuple[str, ...], batch_size: int, db: Path | None, window_rows: int | None) -> None:
    """Predict every row of a CSV or JSON-lines file.

    Writes one line per good row with its row number, a `prediction` column and,
    for classifiers, one `proba_<label>` column per class. Bad rows are reported
    on standard error by row number (1 = first data row) and the exit status is 1.
    With --db (or [monitoring] db in the config) every prediction is monitored and
    logged; SIGTERM or Ctrl-C stops cleanly, losing nothing already predicted.
    """
    if fmt is None:
        fmt = "jsonl" if str(getattr(input_file, "name", "")).endswith((".jsonl", ".ndjson")) else "csv"
    _exit_cleanly_on_sigterm()
    with Runtime(bundle, config=config, db=db, window_rows=window_rows) as runtime:
        columns = ["row", "prediction"] + [f"proba_{c}" for c in runtime.classes]
        writer = PredictionWriter(output, fmt, columns)
        total, errors = 0, []
        for chunk in batched(read_rows(input_file, fmt, drop=drop), batch_size):
            good = [(i, r) for i, r in enumerate(chunk) if not isinstance(r, Exception)]
            errors += [str(r) for r in chunk if isinstance(r, Exception)]  # they carry their row
            if good:
                try:
                    result = runtime.predict_batch([r for _, r in good], on_error="skip")
                except OverloadError as exc:  # budgets shed this chunk: report its rows, go on
                    errors += [f"row {total + i + 1}: {exc}" for i, _ in good]
                    total += len(chunk)
                    continue
                for err in result.errors:
                    number = total + good[err.row or 0][0] + 1
                    errors.append(f"row {number}: {err.args[0]}")
                for record in result.records():
                    record["row"] = total + good[record["row"]][0] + 1
                    writer.write(record)
            total += len(chunk)
            output.flush()
    if errors:
        for line in errors[:_MAX_ROW_ERRORS_SHOWN]:
            click.echo(f"Error: {line}", err=True)
        if len(errors) > _MAX_ROW_ERRORS_SHOWN:
            click.echo(f"Error: ... and {len(errors) - _MAX_ROW_ERRORS_SHOWN} more bad rows", err=True)
        raise click.ClickException(f"{len(errors)} of {total} rows rejected; the other rows were written")


def _exit_cleanly_on_sigterm() -> None:
    """Make SIGTERM unwind like Ctrl-C, so `with Runtime(...)` flushes and closes the database."""

    def handler(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)


def _open_store(db: Path) -> Any:
    # Imported on use: sqlite-utils (and pandas, when installed) slow every other command's start.
    from edge_runtime.monitoring.store import MonitorStore

    return MonitorStore(db, create=False)


def _fmt_us(latency: dict[str, float] | None) -> str:
    if not latency:
        return "-"
    return f"p50 {latency['p50_us']:.1f} / p90 {latency['p90_us']:.1f} / p99 {latency['p99_us']:.1f} us"


@main.command()
@click.option("--db", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Monitoring database.")
@click.option("--windows", "recent", type=click.IntRange(1), default=5, show_default=True,
              help="Recent closed windows to show.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_library_errors
def status(db: Path, recent: int, as_json: bool) -> None:
    """Current window, recent windows, data quality, latency and drift status."""
    from edge_runtime.monitoring.monitor import monitoring_status

    store = _open_store(db)
    try:
        report = monitoring_status(store, recent)
    finally:
        store.close()
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    current = report["current_window"]
    click.echo(f"decision log: {report['decisions']} rows, database {report['database_bytes'] / 1e6:.2f} MB")
    if current:
        click.echo(f"open window {current['seq']}: {current['rows']} rows, {current['rejected']} rejected, "
                   f"latency {_fmt_us(current['latency'])}")
        budget = current.get("budget")
        if budget:
            click.echo(f"budget: level {budget['level']}, latency {_fmt(budget['latency_ms'], ' ms')}, "
                       f"cpu share {_fmt(budget['cpu_share'])}, rss {_fmt(budget['rss_mb'], ' MB')}, "
                       f"violations {budget['violations'] or 'none'}")
    for w in report["windows"]:
        summary = w["summary"] or {}
        drifted = ", ".join(summary.get("drifted", [])) or "none"
        level = f", budget level {w['budget']['level']}" if w.get("budget") else ""
        click.echo(f"window {w['seq']}: {w['rows']} rows{' (partial)' if w.get('partial') else ''}, "
                   f"{w['rejected']} rejected, latency {_fmt_us(w['latency'])}, drift: {drifted}, "
                   f"prediction: {summary.get('prediction', '-')}{level}")
    quality = report["quality"]
    if quality:
        click.echo("data quality (recent windows): " + ", ".join(f"{k} {v}" for k, v in quality.items()))
    if report["features"]:
        click.echo("latest drift status:")
        for name, entry in report["features"].items():
            click.echo(f"  {name}: {entry['status']} ({entry['metric']} {entry['value']:.4f}, "
                       f"threshold {entry['threshold']:.4f})")
    for event in report["events"]:
        click.echo(f"event: window {event['window_seq']} {event['status']}: {event['message']}")


@main.command()
@click.option("--db", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Monitoring database.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_library_errors
def drift(db: Path, as_json: bool) -> None:
    """Per closed window: its rows and every feature's drift verdict."""
    from edge_runtime.monitoring.monitor import drift_report

    store = _open_store(db)
    try:
        report = drift_report(store)
    finally:
        store.close()
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    if not report["windows"]:
        click.echo("no closed window yet")
    for w in report["windows"]:
        features = w["features"]
        by_status: dict[str, list[str]] = {"drift": [], "warn": [], "ok": []}
        for name, entry in features.items():
            by_status[entry["status"]].append(f"{name} ({entry['metric']} {entry['value']:.3f})")
        prediction = w["prediction"]["status"] if w["prediction"] else "-"
        click.echo(f"window {w['index']}: {w['rows']} rows{' (partial)' if w['partial'] else ''}; "
                   f"prediction {prediction}")
        if not features:
            click.echo("  (no reference profile in the bundle: not assessed)")
            continue
        click.echo(f"  drift: {', '.join(by_status['drift']) or 'none'}")
        click.echo(f"  warn:  {', '.join(by_status['warn']) or 'none'}")
        click.echo(f"  ok:    {len(by_status['ok'])} features")


@main.command("log")
@click.option("--db", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Monitoring database.")
@click.option("--tail", "tail_rows", type=click.IntRange(1), default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON lines.")
@_library_errors
def log_command(db: Path, tail_rows: int, as_json: bool) -> None:
    """The most recent decisions of the decision log."""
    store = _open_store(db)
    try:
        rows = store.tail(tail_rows)
    finally:
        store.close()
    if as_json:
        for row in rows:
            click.echo(json.dumps(row))
        return
    click.echo(f"{'request_id':>10}  {'time (UTC)':<26}  {'model':<20}  {'prediction':<12}  {'score':>7}  "
               f"{'latency_us':>10}  input_hash")
    for row in rows:
        when = datetime.datetime.fromtimestamp(row["ts"], datetime.timezone.utc).isoformat(timespec="milliseconds")
        click.echo(f"{row['request_id']:>10}  {when:<26}  {row['model'] + ':' + row['version']:<20}  "
                   f"{row['prediction']:<12}  {row['score']:>7.4f}  {row['latency_us']:>10.1f}  {row['input_hash']}")


@main.command()
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option("--scenario", type=click.Choice(SCENARIOS), default="single-stream", show_default=True)
@click.option("--duration", type=click.FloatRange(min=0.01), default=10.0, show_default=True,
              help="Minimum measured seconds (per batch size / per probe).")
@click.option("--min-queries", type=click.IntRange(1), default=1024, show_default=True)
@click.option("--qps", type=click.FloatRange(min=0.001), default=100.0, show_default=True,
              help="Server scenario: mean Poisson arrival rate (the start of a --find-max-qps search).")
@click.option("--find-max-qps", is_flag=True, help="Server scenario: highest rate whose p99 holds the budget.")
@click.option("--budget-ms", type=click.FloatRange(min=0.0, min_open=True),
              help="Server scenario latency bound (default: [budgets] latency_ms of the config).")
@click.option("--compare", type=click.Choice(["raw"]), help="Also run raw onnxruntime on the same rows.")
@click.option("--batch-sizes", default="1,8,32,128,512", show_default=True, help="Offline scenario sweep.")
@click.option("--input", "input_file", type=click.File("r"), help="Rows to use (CSV or JSON lines); "
              "default: drawn from the bundle's reference profile.")
@click.option("--config", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="Device config (TOML).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@_library_errors
def bench(bundle: Path, scenario: str, duration: float, min_queries: int, qps: float, find_max_qps: bool,
          budget_ms: float | None, compare: str | None, batch_sizes: str, input_file: Any, config: Path | None,
          as_json: bool) -> None:
    """Measure latency and throughput the way MLPerf LoadGen does."""
    try:
        sizes = tuple(int(v) for v in batch_sizes.split(",") if v.strip())
    except ValueError as exc:
        raise click.BadParameter(f"--batch-sizes takes integers separated by commas, got {batch_sizes!r}") from exc
    settings = BenchSettings(scenario=scenario, duration_s=duration, min_queries=min_queries, qps=qps,
                             find_max_qps=find_max_qps, budget_ms=budget_ms, compare_raw=compare == "raw",
                             batch_sizes=sizes, warmup_s=min(1.0, duration / 5))
    rows = None
    if input_file is not None:
        fmt = "jsonl" if str(getattr(input_file, "name", "")).endswith((".jsonl", ".ndjson")) else "csv"
        rows = [r for r in read_rows(input_file, fmt) if not isinstance(r, Exception)]
        if not rows:
            raise click.ClickException(f"no usable row in {getattr(input_file, 'name', 'the input')}")
    long_run = duration >= 3 and not as_json and scenario != "cold-start" and sys.stderr.isatty()
    with click.progressbar(length=1000, label=f"{scenario}", file=sys.stderr) if long_run else _NoBar() as bar:
        done = [0]

        def progress(fraction: float) -> None:
            step = int(fraction * 1000) - done[0]
            if step > 0:
                bar.update(step)
                done[0] += step

        report = run_benchmark(bundle, settings, config=config, rows=rows, progress=progress)
    if as_json:
        click.echo(json.dumps(report, indent=2, default=str))
        return
    _print_bench(report)


class _NoBar:
    def __enter__(self) -> _NoBar:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def update(self, step: int) -> None:
        return None


def _fmt(value: Any, unit: str = "") -> str:
    if value is None:
        return "-"
    return f"{value:,.1f}{unit}" if isinstance(value, float) else f"{value}{unit}"


def _print_bench(report: dict[str, Any]) -> None:
    m, v, r = report["machine"], report["versions"], report["results"]
    click.echo(f"edge-runtime bench: {report['scenario']} on {report['model']['name']} {report['model']['version']} "
               f"(model sha256 {report['model']['sha256'][:12]}, monitoring {'on' if report['monitoring'] else 'off'})")
    click.echo(f"machine: {m['cpu']}, {m['cores']} cores, {m['arch']}; python {m['python']}, onnxruntime "
               f"{v['onnxruntime']}, numpy {v['numpy']}, edge-runtime {v['edge_runtime']}")
    scenario = report["scenario"]
    if scenario == "single-stream":
        click.echo(f"queries {r['queries']:,}: p50 {_fmt(r['p50_us'])} us, p90 {_fmt(r['p90_us'])} us, "
                   f"p99 {_fmt(r['p99_us'])} us, p99.9 {_fmt(r['p99.9_us'])} us, max {_fmt(r['max_us'])} us")
        click.echo(f"harness overhead {r['harness_overhead_us']:.2f} us/query; cpu share {r['cpu_share']:.2f}, "
                   f"peak rss {r['peak_rss_mb']:.1f} MB")
        for name, layer in r.get("layers", {}).items():
            click.echo(f"  {name:<40} p50 {_fmt(layer['p50_us'])} us  p99 {_fmt(layer['p99_us'])} us  "
                       f"{layer['p50_vs_raw']:.2f}x raw")
    elif scenario == "server":
        if "max_qps" in r:
            best = r["at_max_qps"] or {}
            click.echo(f"max qps holding p99 <= {r['budget_ms']} ms: {_fmt(r['max_qps'])} "
                       f"(p99 there {_fmt(best.get('p99_us'))} us, refused {best.get('refused', '-')})")
            for probe in r["probes"]:
                click.echo(f"  probe {probe['target_qps']:,.0f} qps: p99 {_fmt(probe['p99_us'])} us, "
                           f"{'met' if probe['met_budget'] else 'missed'}")
        else:
            verdict = {True: "met", False: "MISSED", None: "no budget"}[r["met_budget"]]
            click.echo(f"target {r['target_qps']:,.1f} qps, achieved {r['achieved_qps']:,.1f}; answered "
                       f"{r['answered']:,}, refused {r['refused']:,}")
            click.echo(f"latency from scheduled arrival: p50 {_fmt(r['p50_us'])} us, p99 {_fmt(r['p99_us'])} us, "
                       f"max {_fmt(r['max_us'])} us; budget {r['budget_ms']} ms: {verdict}")
            click.echo(f"service time p99 {_fmt(r['service_p99_us'])} us; harness wake-up delay p99 "
                       f"{_fmt(r['harness_late_p99_us'])} us")
            click.echo(f"cpu share {r['cpu_share']:.2f}, peak rss {r['peak_rss_mb']:.1f} MB")
    elif scenario == "offline":
        for entry in r["sweep"]:
            extra = (f", raw {entry['raw_rows_per_s']:,.0f} rows/s ({entry['runtime_vs_raw']:.0%})"
                     if "raw_rows_per_s" in entry else "")
            click.echo(f"  batch {entry['batch']:>5}: {entry['runtime_rows_per_s']:,.0f} rows/s{extra}")
        click.echo(f"best: batch {r['best_batch']} at {r['best_rows_per_s']:,.0f} rows/s; cpu share "
                   f"{r['cpu_share']:.2f}, peak rss {r['peak_rss_mb']:.1f} MB")
    else:
        click.echo(f"first answer {r['first_answer_ms']:.1f} ms after process launch (median of {r['runs']}; "
                   f"import {r['import_ms']:.1f} ms, load and answer {r['load_and_answer_ms']:.1f} ms); "
                   f"rss {r['rss_mb']:.1f} MB")
    for note in r.get("notes", []) if isinstance(r, dict) else []:
        click.echo(f"note: {note}")
    if "budget" in report:
        b = report["budget"]
        click.echo(f"budget state: level {b['level']}, violations {b['violations'] or 'none'}")


@main.command()
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Keep the demo bundle here (default: a temporary directory).")
@_library_errors
def demo(out_dir: Path | None) -> None:
    """Train a model on data shipped with scikit-learn, export it, and serve it."""
    try:
        from converters.demo import run_demo
        import sklearn  # noqa: F401
    except ImportError as exc:
        raise click.ClickException(
            f"the demo trains a model and needs the export extra: pip install 'edge-runtime[export]' ({exc})"
        ) from exc
    with tempfile.TemporaryDirectory() as tmp:
        report = run_demo(out_dir or tmp)
        _print_demo(report, keep=out_dir is not None)


def _print_demo(report: Any, keep: bool) -> None:
    p = report.parity
    click.echo(f"edge-runtime demo: {report.model_type} on {report.dataset}")
    click.echo(f"  trained on {report.train_rows} rows; {report.test_rows} held-out rows served on the device runtime")
    click.echo(f"  bundle: {report.bundle}" + ("" if keep else " (temporary; --out DIR keeps it)"))
    click.echo(f"  parity vs scikit-learn ({p.get('source')}): label agreement {p.get('label_agreement'):.4f}, "
               f"max |proba diff| {p.get('max_abs_diff'):.2e}, rows beyond tolerance "
               f"{p.get('rows_beyond_tolerance')} of {p.get('rows')}: {'PASSED' if p.get('passed') else 'FAILED'}")
    lat = report.latency_us
    click.echo(f"  single-row latency (dict rows): p50 {lat['p50']:.1f} us, p90 {lat['p90']:.1f} us, "
               f"p99 {lat['p99']:.1f} us")
    click.echo(f"  accuracy on held-out rows: runtime {report.accuracy:.4f}, scikit-learn "
               f"{report.sklearn_accuracy:.4f}; same label on {report.label_agreement:.2%} of rows")
    click.echo("  first predictions:")
    for ex in report.examples:
        click.echo(f"    row {ex['row']}: true {ex['true']:<9} predicted {ex['predicted']:<9} "
                   f"(p={ex['probability']:.3f})")
    click.echo(f"  monitoring ({len(report.windows)} windows; shift injected into: "
               f"{', '.join(report.shifted_features)}):")
    for w in report.windows:
        drifted = ", ".join(f"{name} ({e['metric']} {e['value']:.2f} > {e['threshold']:.2f})"
                            for name, e in w["drift"].items()) or "none"
        click.echo(f"    window {w['index']} ({w['rows']} {w['stream']}): drifted: {drifted}; "
                   f"warn: {', '.join(w['warn']) or 'none'}; ok: {w['ok']} features; prediction: {w['prediction']}")
    click.echo(f"  decision log and windows: {report.database}" + ("" if keep else " (temporary)")
               + "; see `edge-runtime drift --db ...`")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
