"""The docs follow the code: every CLI command and option is in docs/cli.md, which is
generated (scripts/cli_reference.py) and current, and every page the README links exists."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType

import click
import pytest

from edge_runtime.cli import main

ROOT = Path(__file__).resolve().parent.parent
CLI_DOC = ROOT / "docs" / "cli.md"
# [text](target) in Markdown, the target up to a closing parenthesis or a space.
LINK = re.compile(r"\]\(([^)\s]+)\)")


def _load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("cli_reference", ROOT / "scripts" / "cli_reference.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def generator() -> ModuleType:
    return _load_generator()


def _all_commands() -> dict[str, click.Command]:
    """Every command, walked the way ``edge-runtime --help`` lists them (entry points included)."""
    ctx = click.Context(main, info_name="edge-runtime")
    found = {}
    for name in main.list_commands(ctx):
        command = main.get_command(ctx, name)
        assert command is not None, name
        found[name] = command
    return found


def _sections(text: str) -> dict[str, str]:
    """docs/cli.md split at each ``### `edge-runtime NAME` `` heading."""
    parts = re.split(r"^### `edge-runtime ([\w-]+)`$", text, flags=re.MULTILINE)
    return {parts[i]: parts[i + 1] for i in range(1, len(parts), 2)}


def test_entry_point_commands_are_walked() -> None:
    # The workstation's commands come through entry points; the walk must see them as real commands
    # with their options (not the stand-in that only names the missing extra).
    commands = _all_commands()
    for name in ("export", "bundle", "demo"):
        assert name in commands
        assert "--out" in {opt for param in commands[name].params for opt in getattr(param, "opts", ())}


def test_cli_doc_mentions_every_command_and_long_option() -> None:
    sections = _sections(CLI_DOC.read_text(encoding="utf-8"))
    missing = []
    for name, command in _all_commands().items():
        if name not in sections:
            missing.append(f"command '{name}'")
            continue
        # A group's subcommands are documented inside its section, each with its options.
        subcommands = {name: command}
        if isinstance(command, click.Group):
            subcommands.update({f"{name} {sub}": command.commands[sub] for sub in command.commands})
        for full, sub in subcommands.items():
            if full != name and f"`edge-runtime {full}`" not in sections[name]:
                missing.append(f"command '{full}'")
            for param in sub.params:
                for opt in [*param.opts, *getattr(param, "secondary_opts", [])]:
                    if opt.startswith("--") and f"`{opt}`" not in sections[name]:
                        missing.append(f"'{full} {opt}'")
    assert not missing, f"docs/cli.md lacks {', '.join(missing)}: run python scripts/cli_reference.py"


def test_cli_doc_mentions_global_options() -> None:
    text = CLI_DOC.read_text(encoding="utf-8")
    for param in main.params:
        for opt in param.opts:
            assert f"`{opt}`" in text, opt


def test_cli_doc_is_what_the_generator_writes_now(generator: ModuleType) -> None:
    assert CLI_DOC.read_text(encoding="utf-8") == generator.render(), (
        "docs/cli.md is stale: run python scripts/cli_reference.py")


def test_generator_check_mode(generator: ModuleType, tmp_path: Path) -> None:
    stale = tmp_path / "cli.md"
    stale.write_text("# old\n", encoding="utf-8")
    assert generator.main(["--check", "--out", str(stale)]) == 1
    assert generator.main(["--out", str(stale)]) == 0
    assert generator.main(["--check", "--out", str(stale)]) == 0


def _local_links(page: Path) -> list[tuple[str, Path, str]]:
    """Every link to a file of the repository: (as written, the file, the anchor or "")."""
    text = re.sub(r"^```.*?^```", "", page.read_text(encoding="utf-8"), flags=re.MULTILINE | re.DOTALL)
    links = []
    for target in LINK.findall(text):
        path, _, anchor = target.partition("#")
        if re.match(r"^[a-z]+:", path):  # a URL
            continue
        links.append((target, (page.parent / path).resolve() if path else page.resolve(), anchor))
    return links


def _anchors(page: Path) -> set[str]:
    """The anchors GitHub makes of a page's headings: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"^```.*?^```", "", page.read_text(encoding="utf-8"), flags=re.MULTILINE | re.DOTALL)
    return {re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
            for heading in re.findall(r"^#+ (.+)$", text, flags=re.MULTILINE)}


def test_readme_links_every_docs_page_and_each_exists() -> None:
    readme = ROOT / "README.md"
    links = _local_links(readme)
    for target, path, _ in links:
        assert path.exists(), f"README.md links {target}, which does not exist"
    linked = {path for _, path, _ in links}
    assert any(p.parent == ROOT / "docs" for p in linked), "README.md links no page of docs/"
    unlinked = sorted(p.name for p in (ROOT / "docs").glob("*.md") if p.resolve() not in linked)
    assert not unlinked, f"README.md does not link docs/{', docs/'.join(unlinked)}"


@pytest.mark.parametrize("page", [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))], ids=lambda p: p.name)
def test_links_and_anchors_resolve(page: Path) -> None:
    for target, path, anchor in _local_links(page):
        assert path.exists(), f"{page.name} links {target}, which does not exist"
        if anchor and path.suffix == ".md":
            assert anchor in _anchors(path), f"{page.name} links {target}: no such heading in {path.name}"
