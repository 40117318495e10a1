"""Docs that cannot drift: every CLI command has help text and is in the README; every
notebook and its parameters are in the README."""

from __future__ import annotations

import json
import re
from pathlib import Path

import click
import pytest

from mailops.cli import cli

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def _commands(group: click.Group, prefix: str = "mailops") -> list[tuple[str, click.Command]]:
    out: list[tuple[str, click.Command]] = []
    for name, cmd in sorted(group.commands.items()):
        path = f"{prefix} {name}"
        out.append((path, cmd))
        if isinstance(cmd, click.Group):
            out.extend(_commands(cmd, path))
    return out


COMMANDS = _commands(cli)


@pytest.mark.parametrize("path,cmd", COMMANDS, ids=[p for p, _ in COMMANDS])
def test_every_command_has_help(path, cmd):
    assert (cmd.help or cmd.short_help or "").strip(), f"{path} has no help text"


def _documented(path: str) -> bool:
    """`mailops draft list` is documented as itself, or inside `mailops draft create|list|...`
    (also `[list]`, an optional subcommand)."""
    *parents, leaf = path.split()
    alternatives = r"(?:\[?[\w-]+\]?\\?\|)*"
    pattern = (
        "`"
        + r"\s+".join(map(re.escape, parents))
        + r"\s+"
        + alternatives
        + r"\[?"
        + re.escape(leaf)
        + r"\b"
    )
    return re.search(pattern, README) is not None


@pytest.mark.parametrize("path", [p for p, c in COMMANDS if not isinstance(c, click.Group)])
def test_every_command_is_in_readme(path):
    assert _documented(path), f"README does not document `{path}`"


def test_docs_check_can_fail():
    assert not _documented("mailops no-such-command")
    assert _documented("mailops db migrate")


NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=[n.stem for n in NOTEBOOKS])
def test_every_notebook_and_parameter_is_in_readme(nb):
    assert f"`{nb.stem}`" in README or nb.name in README, f"README does not mention {nb.name}"
    cells = json.loads(nb.read_text())["cells"]
    params = [c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert params, f"{nb.name} has no cell tagged 'parameters' (R5)"
    src = "".join(params[0]["source"])
    names = [
        line.split(":")[0].split("=")[0].strip()
        for line in src.splitlines()
        if line.strip() and not line.lstrip().startswith("#") and ("=" in line)
    ]
    for name in names:
        assert name in README, f"README does not document parameter {name} of {nb.name}"


def test_the_two_commands_come_first():
    head = README.split("## Architecture")[0]
    assert "make demo" in head and "make test" in head


def _section(name: str) -> str:
    start = README.index(f"<!-- section:{name} -->")
    return README[start : README.index(f"<!-- /section:{name} -->", start)]


def _layout_names() -> list[str]:
    """Every top-level module (`x.py`) and package (`x/`) of mailops/, and the dev wing's."""
    out = []
    for base, prefix in ((ROOT / "mailops", ""), (ROOT / "mailops" / "dev", "dev/")):
        for p in sorted(base.iterdir()):
            if p.name.startswith(("_", ".")) or p.name == "py.typed":
                continue
            if p.is_dir() and (p / "__init__.py").exists():
                out.append(f"{prefix}{p.name}/")
            elif p.suffix == ".py":
                out.append(f"{prefix}{p.name}")
    return out


@pytest.mark.parametrize("name", _layout_names())
def test_architecture_paragraph_names_every_module(name):
    """Issue 9: the architecture paragraph follows the layout."""
    arch = _section("architecture")
    assert f"`{name}`" in arch or f"`{name.removeprefix('dev/')}`" in arch, (
        f"README architecture paragraph does not mention `{name}`"
    )


def test_architecture_paragraph_names_only_what_exists():
    arch = _section("architecture")
    for name in re.findall(r"`((?:dev/)?[a-z_]+(?:\.py|/))`", arch):
        if name in ("mailops/", "notebooks/", "reports/"):  # top-level folders
            assert (ROOT / name).is_dir()
            continue
        assert (ROOT / "mailops" / name).exists() or list(
            (ROOT / "mailops").rglob(name.rstrip("/"))
        ), f"README architecture names `{name}`, which is not in mailops/"


def test_dev_wing_commands_are_in_the_dev_section():
    """`mailops devserver ...` / `mailops demo ...` come from mailops/dev/cli.py and are
    documented together in the README's dev section."""
    from mailops.dev import cli as dev_cli

    section = _section("cli-dev")
    wing = {dev_cli.devserver.name, dev_cli.demo.name}
    paths = [p for p, c in COMMANDS if p.split()[1] in wing and not isinstance(c, click.Group)]
    assert "mailops devserver add-user" in paths
    for path in paths:
        assert f"`{path}" in section, f"README's dev section does not document `{path}`"
