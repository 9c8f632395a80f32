"""Every CLI command is documented in docs/cli.md with all its options, and answers --help."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from dtms.cli import cli

DOCS = Path(__file__).resolve().parent.parent / "docs"
CLI_DOC = DOCS / "cli.md"


def commands(group: click.Group, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Every command path under `group`, sub-groups included (`("config", "show")`)."""
    for name, command in sorted(group.commands.items()):
        yield (*prefix, name)
        if isinstance(command, click.Group):
            yield from commands(command, (*prefix, name))


def command_at(path: tuple[str, ...]) -> click.Command:
    command: click.Command = cli
    for name in path:
        assert isinstance(command, click.Group)
        command = command.commands[name]
    return command


def section(path: tuple[str, ...]) -> str:
    """The part of docs/cli.md under the heading `dtms <path>`, up to the next heading as high or higher."""
    text = CLI_DOC.read_text()
    heading = re.search(rf"^(#+) `dtms {re.escape(' '.join(path))}\b[^`]*`", text, re.MULTILINE)
    assert heading, f"docs/cli.md has no heading for `dtms {' '.join(path)}`"
    level = len(heading.group(1))
    rest = text[heading.end() :]
    following = re.search(rf"^#{{1,{level}}} ", rest, re.MULTILINE)
    return rest[: following.start()] if following else rest


ALL = list(commands(cli))


def test_there_are_commands() -> None:
    """The walk finds the commands (guards the parametrized tests against passing on nothing)."""
    assert {("trades",), ("trade",), ("health",)} <= set(ALL)


@pytest.mark.parametrize("path", ALL, ids=" ".join)
def test_command_is_documented_with_every_option(path: tuple[str, ...]) -> None:
    """docs/cli.md has a section for the command naming each of its options."""
    text = section(path)
    for param in command_at(path).params:
        if isinstance(param, click.Option):
            longest = max(param.opts, key=len)
            assert longest in text, f"`dtms {' '.join(path)}`: option {longest} is not documented"


@pytest.mark.parametrize("path", ALL, ids=" ".join)
def test_command_has_help(path: tuple[str, ...]) -> None:
    """`dtms <command> --help` exits 0 and prints a usage line and a description."""
    result = CliRunner().invoke(cli, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("Usage:")
    assert (command_at(path).help or "").strip(), "the command has no docstring"


def test_root_options_are_documented() -> None:
    """--db and DTMS_DB are explained."""
    text = CLI_DOC.read_text()
    assert "--db" in text
    assert "DTMS_DB" in text
