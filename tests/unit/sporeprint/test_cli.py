"""The ``sporeprint`` command line in-process (click's CliRunner): every command's help, and what a person
sees when a service cannot be reached (one line, exit code 1, no traceback)."""

from __future__ import annotations

from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from sporeprint.cli import main
from sporeprint.stack import free_port

pytestmark = pytest.mark.unit


def command_paths(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    paths = [prefix]
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            paths += command_paths(command, (*prefix, name))
        else:
            paths.append((*prefix, name))
    return paths


def run(*args: str, stack_dir: Path) -> click.testing.Result:
    # --stack-dir: an empty one, so a developer's running local stack never leaks into the test
    return CliRunner().invoke(main, ["--stack-dir", str(stack_dir), *args])


def test_every_command_has_help(tmp_path: Path) -> None:
    paths = command_paths(main)
    assert {("harvest", verb) for verb in ("start", "watch", "status", "cancel", "resume")} <= set(paths)
    assert {("import",), ("manifests", "list"), ("stack", "up"), ("demo",)} <= set(paths)
    for path in paths:
        result = run(*path, "--help", stack_dir=tmp_path)
        assert result.exit_code == 0, (path, result.output)
        assert result.output.startswith(f"Usage: main {' '.join(path)}".rstrip()), (path, result.output)


@pytest.mark.parametrize("args", [
    ["harvest", "status", "h-0123456789abcdef"],
    ["harvest", "watch", "h-0123456789abcdef"],
    ["harvest", "start", "fungi", "--no-wait"],
    ["harvest", "cancel", "h-0123456789abcdef"],
    ["harvest", "resume", "h-0123456789abcdef"],
])
def test_an_unreachable_downloader_is_one_line_and_exit_code_1(tmp_path: Path, args: list[str]) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # a closed loopback port
    result = run(*args, "--url", url, "--token", "t", stack_dir=tmp_path)
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"Error: downloader at {url} did not answer "), result.output
    assert isinstance(result.exception, SystemExit) and "Traceback" not in result.output  # not an uncaught error
