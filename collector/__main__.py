"""``python -m collector ...``: the collector's commands without the ``edge-runtime`` entry point."""

from collector.cli import collector_command

collector_command(prog_name="python -m collector")
