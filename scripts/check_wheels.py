"""Check that every install of edge-runtime resolves to wheels for a 64-bit Raspberry Pi.

Why this exists: the devices edge-runtime targets (a Raspberry Pi on 64-bit Raspberry Pi
OS bookworm: Linux aarch64, glibc 2.36, CPython 3.11) have no compiler toolchain worth
the name, so a dependency that publishes an sdist but no aarch64 wheel installs fine on
an x86-64 workstation and then fails, or builds for an hour, on the device. Nothing on
the workstation or in CI notices, so this script asks pip to resolve each requirement
set the way such a device would, with binary wheels only.

What is checked, one line per set:

- ``base``: the ``[project] dependencies`` (``pip install edge-runtime``);
- each optional extra except ``test``, resolved together with the base dependencies as
  ``pip install 'edge-runtime[extra]'`` would (so a pin in an extra that fights a base
  dependency fails too), on a line named after the extra. An extra that names the
  project itself (``all = ["edge-runtime[server,mqtt]"]``) is expanded from pyproject.

``test`` is left out on purpose: pytest, hypothesis, mypy and scipy run on workstations
and in CI, never on a device, and scipy and mypy are exactly the kind of package whose
aarch64 wheels may lag behind without harming a device install.

How: ``pip install --dry-run --report`` with ``--only-binary=:all:``, the target's
platform tags, ``--python-version 3.11`` and ``--implementation cp`` into a throwaway
``--target``; nothing is installed. A pure-Python package resolves through its
``py3-none-any`` wheel. Where the index serves PEP 658 metadata, a recent pip reads
only that; the index reachable from CI serves none, and pip 23.2 fetches the wheels even
in a dry run (``--use-feature=fast-deps`` fetched them all the same), so a run moves about
150 MB today (base and export) and takes some 12 s on a fast link. Still no install,
and nothing is written outside a temporary folder.

pip runs with ``--isolated``: the local machine's pip configuration (extra indexes,
``find-links`` folders, a constraints file) must not make the answer differ from what a
fresh device would get. Only ``PIP_INDEX_URL`` (a mirror of the same index) and
``PIP_CERT`` (a CA bundle to reach it) are passed on.

Limits: pip evaluates environment markers (``; platform_machine == "x86_64"``) for the
machine running the check, not for the target, so a requirement guarded by a marker is
judged as the host sees it.

Run: ``python scripts/check_wheels.py`` (``-v`` lists the wheel chosen for each package);
exits 1 when any set fails.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "DEVICE_GLIBC",
    "SKIPPED_EXTRAS",
    "SetResult",
    "check_set",
    "load_requirement_sets",
    "main",
    "pip_command",
    "pip_failure_reason",
    "platform_tags",
    "requirement_sets",
]

#: Extras that never reach a device (see the module docstring).
SKIPPED_EXTRAS = frozenset({"test"})

#: (major, minor) of the device's glibc: Raspberry Pi OS bookworm ships 2.36.
DEVICE_GLIBC = (2, 36)

ROOT = Path(__file__).resolve().parent.parent

# A PEP 508 requirement's leading name and optional [extras]; the rest (version,
# marker) is only needed for self-references, where it is dropped.
_NAME_AND_EXTRAS = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[([^\]]*)\])?")

Runner = Callable[[list[str]], subprocess.CompletedProcess[str]]


def _normalize(name: str) -> str:
    """PEP 503 name normalization: ``Edge_Runtime`` and ``edge-runtime`` are one project."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _expand(requirements: Sequence[str], project: str, extras: Mapping[str, Sequence[str]],
            seen: set[str]) -> list[str]:
    """Replace references to the project itself by the requirements of the extras they name."""
    expanded: list[str] = []
    for requirement in requirements:
        match = _NAME_AND_EXTRAS.match(requirement)
        if match is None or _normalize(match.group(1)) != project:
            expanded.append(requirement)
            continue
        for extra in (e.strip() for e in (match.group(2) or "").split(",")):
            if not extra or extra in seen:
                continue
            if extra not in extras:
                raise ValueError(f"{requirement!r} names the extra {extra!r}, which pyproject.toml does not define")
            seen.add(extra)
            expanded.extend(_expand(extras[extra], project, extras, seen))
    return expanded


def requirement_sets(pyproject: Mapping[str, Any],
                     skipped: frozenset[str] = SKIPPED_EXTRAS) -> dict[str, list[str]]:
    """The requirement sets a device may install, keyed ``base`` and then by extra.

    Parameters
    ----------
    pyproject
        The parsed ``pyproject.toml``.
    skipped
        Extras left out (by default ``test``).

    Returns
    -------
    dict
        ``{"base": [...], "<extra>": [base..., extra...], ...}`` in pyproject's order,
        with duplicates removed and self-references expanded.

    Examples
    --------
    >>> requirement_sets({"project": {"name": "demo", "dependencies": ["numpy>=1.26"],
    ...     "optional-dependencies": {"io": ["pyarrow"], "test": ["pytest"],
    ...                               "all": ["demo[io]"]}}})
    {'base': ['numpy>=1.26'], 'io': ['numpy>=1.26', 'pyarrow'], 'all': ['numpy>=1.26', 'pyarrow']}
    """
    project = pyproject["project"]
    name = _normalize(project["name"])
    extras: dict[str, list[str]] = dict(project.get("optional-dependencies", {}))
    base = _expand(project.get("dependencies", []), name, extras, set())
    sets = {"base": list(dict.fromkeys(base))}
    for extra, requirements in extras.items():
        if extra in skipped:
            continue
        combined = base + _expand(requirements, name, extras, {extra})
        sets[extra] = list(dict.fromkeys(combined))
    return sets


def load_requirement_sets(path: Path = ROOT / "pyproject.toml") -> dict[str, list[str]]:
    """:func:`requirement_sets` of the ``pyproject.toml`` at ``path``."""
    with path.open("rb") as f:
        return requirement_sets(tomllib.load(f))


def platform_tags(glibc: tuple[int, int] = DEVICE_GLIBC, arch: str = "aarch64") -> list[str]:
    """The manylinux tags a device with this glibc accepts, most specific first.

    pip does not widen ``--platform manylinux_2_28_aarch64`` to the older tags that such
    a device also accepts, so every one is listed, down to manylinux2014 (glibc 2.17,
    the oldest with aarch64).

    Examples
    --------
    >>> tags = platform_tags((2, 28))
    >>> tags[0], tags[-2], tags[-1], len(tags)
    ('manylinux_2_28_aarch64', 'manylinux_2_17_aarch64', 'manylinux2014_aarch64', 13)
    """
    major, newest = glibc
    tags = [f"manylinux_{major}_{minor}_{arch}" for minor in range(newest, 16, -1)]
    return tags + [f"manylinux2014_{arch}"]


def pip_command(requirements: Sequence[str], report: Path, target: Path,
                environ: Mapping[str, str] = os.environ) -> list[str]:
    """The pip call that resolves ``requirements`` for the device, writing a JSON report."""
    command = [sys.executable, "-m", "pip", "--isolated", "--disable-pip-version-check",
               "install", "--dry-run", "--ignore-installed", "--progress-bar", "off",
               "--report", str(report), "--target", str(target),
               "--only-binary=:all:", "--python-version", "3.11", "--implementation", "cp"]
    for tag in platform_tags():
        command += ["--platform", tag]
    if environ.get("PIP_INDEX_URL"):
        command += ["--index-url", environ["PIP_INDEX_URL"]]
    if environ.get("PIP_CERT"):
        command += ["--cert", environ["PIP_CERT"]]
    return command + list(requirements)


def pip_failure_reason(output: str) -> str:
    """pip's own words for a failed resolution: its ``ERROR:`` lines, else its last line.

    Examples
    --------
    >>> pip_failure_reason("Collecting x\\nERROR: Could not find a version that satisfies "
    ...                    "the requirement x (from versions: none)\\nERROR: No matching "
    ...                    "distribution found for x\\n")
    'Could not find a version that satisfies the requirement x (from versions: none); No matching distribution found for x'
    """
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    errors = [line.removeprefix("ERROR:").strip() for line in lines if line.startswith("ERROR:")]
    if errors:
        return "; ".join(errors)
    return lines[-1] if lines else "pip failed without a message"


@dataclass(frozen=True, slots=True, kw_only=True)
class SetResult:
    """How one requirement set resolved: ``wheels`` when it did, ``reason`` when not."""

    name: str
    wheels: tuple[str, ...] = ()
    reason: str | None = None

    @property
    def ok(self) -> bool:
        return self.reason is None

    def line(self) -> str:
        """``base: ok (16 packages)`` or ``export: FAILED: <pip's reason>``."""
        if self.reason is not None:
            return f"{self.name}: FAILED: {self.reason}"
        count = len(self.wheels)
        return f"{self.name}: ok ({count} package{'' if count == 1 else 's'})"


def _run(command: list[str]) -> subprocess.CompletedProcess[str]:
    # stdin closed: pip must never wait for a prompt (a keyring password) in CI.
    return subprocess.run(command, capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False)


def check_set(name: str, requirements: Sequence[str], run: Runner = _run) -> SetResult:
    """Resolve one requirement set for the device; ``run`` executes the pip command."""
    if not requirements:
        return SetResult(name=name)
    with tempfile.TemporaryDirectory(prefix="check-wheels-") as tmp:
        report = Path(tmp) / "report.json"
        result = run(pip_command(requirements, report, Path(tmp) / "target"))
        if result.returncode != 0:
            return SetResult(name=name, reason=pip_failure_reason(result.stderr + "\n" + result.stdout))
        installs = json.loads(report.read_text())["install"]
    wheels = tuple(item["download_info"]["url"].rsplit("/", 1)[-1] for item in installs)
    not_wheels = [w for w in wheels if not w.endswith(".whl")]
    if not_wheels:  # --only-binary should make this impossible; say so if it ever is not.
        return SetResult(name=name, wheels=wheels, reason=f"not wheels: {', '.join(not_wheels)}")
    return SetResult(name=name, wheels=wheels)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--pyproject", type=Path, default=ROOT / "pyproject.toml",
                        help="the pyproject.toml to read (default: this repository's)")
    parser.add_argument("-v", "--verbose", action="store_true", help="list the wheel chosen for each package")
    args = parser.parse_args(argv)
    failed = False
    for name, requirements in load_requirement_sets(args.pyproject).items():
        result = check_set(name, requirements)
        print(result.line(), flush=True)
        if args.verbose:
            for wheel in result.wheels:
                print(f"    {wheel}")
        failed = failed or not result.ok
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
