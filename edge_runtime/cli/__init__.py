"""The ``edge-runtime`` command line: parse, call the public API, format.

Device commands live here, one module per concern (``inspect``, ``predict``,
``monitoring``, ``bench``, ``sync``). The workstation's commands (``export``, ``bundle``, ``demo``) come from
``converters`` through an entry point, and exist only where the export extra is
installed (see :mod:`edge_runtime.cli.extensions`).
"""

from __future__ import annotations

import sys
import warnings

import click

from edge_runtime.cli.bench import bench
from edge_runtime.cli.extensions import ExtensibleGroup
from edge_runtime.cli.inspect import inspect
from edge_runtime.cli.monitoring import drift, log_command, status
from edge_runtime.cli.predict import predict
from edge_runtime.cli.sync import device, sync
from edge_runtime.version import __version__

__all__ = ["main"]


@click.group(cls=ExtensibleGroup)
@click.version_option(__version__, prog_name="edge-runtime")
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
def main(debug: bool) -> None:
    """Run classic ML models on small CPU-only devices, and watch them there."""
    if not debug:
        # A library warning (monitoring cannot open its database yet) is one line here,
        # not Python's two lines with a source excerpt.
        warnings.showwarning = _one_line_warning


def _one_line_warning(message: Warning | str, category: type[Warning], *args: object, **kwargs: object) -> None:
    text = str(message).removeprefix("edge-runtime: ")
    click.echo(f"Warning: {text}", err=True)


for _command in (inspect, predict, status, drift, log_command, bench, device, sync):
    main.add_command(_command)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
