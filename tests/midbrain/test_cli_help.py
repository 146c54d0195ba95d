"""`midbrain … --help` reads naturally: no type labels on flags, no rich box cut at 80 columns."""

from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from midbrain.cli import app


def every_command(group: Any, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = [path]
    if hasattr(group, "commands"):  # a group (typer vendors its own click)
        for name, command in group.commands.items():
            found += every_command(command, (*path, name))
    return found


@pytest.mark.unit
def test_no_help_text_shows_a_bool_label_and_flags_read_as_flags() -> None:
    root = typer.main.get_command(app)
    commands = every_command(root)
    assert ("simulate", "serial") in commands and ("user", "add") in commands
    runner = CliRunner()
    for path in commands:
        result = runner.invoke(app, [*path, "--help"], prog_name="midbrain", terminal_width=200)
        assert result.exit_code == 0, (path, result.output)
        assert "<bool>" not in result.output and "╭" not in result.output, (path, result.output)
    user_add = runner.invoke(app, ["user", "add", "--help"], prog_name="midbrain", terminal_width=200).output
    assert "--password-stdin / --no-password-stdin" in user_add
