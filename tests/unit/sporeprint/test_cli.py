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


def test_unreachable_s3_is_one_line_naming_the_endpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_port()  # nothing listens there
    monkeypatch.setenv("SPOREPRINT_S3_ENDPOINT", f"127.0.0.1:{port}")
    monkeypatch.setenv("SPOREPRINT_S3_ACCESS_KEY", "sporeprint")
    monkeypatch.setenv("SPOREPRINT_S3_SECRET_KEY", "a-real-secret-1234")
    result = run("manifests", "list", stack_dir=tmp_path)
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"Error: cannot use S3 at 127.0.0.1:{port}"), result.output
    assert "Traceback" not in result.output


def test_the_compose_env_file_on_the_host_gives_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The compose .env names hosts only the compose network knows (seaweedfs:8333): a clear line, no traceback;
    and it is read only when named (a .env in the working directory is not)."""
    for name in ("SPOREPRINT_S3_ENDPOINT", "SPOREPRINT_ENV_FILE"):
        monkeypatch.setenv(name, "")  # restored afterwards: --env-file sets SPOREPRINT_ENV_FILE for the process
        monkeypatch.delenv(name)
    env_file = tmp_path / "compose.env"
    env_file.write_text("SPOREPRINT_S3_ENDPOINT=seaweedfs.invalid:8333\nSPOREPRINT_S3_ACCESS_KEY=sporeprint\n"
                        "SPOREPRINT_S3_SECRET_KEY=a-real-secret-1234\n")
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("SPOREPRINT_S3_BUCKET=NOT VALID\n")  # would break settings if it were read
    result = run("--env-file", str(env_file), "manifests", "list", stack_dir=tmp_path / "no-stack")
    assert result.exit_code == 1, result.output
    assert len(result.output.strip().splitlines()) == 1, result.output
    assert "cannot use S3 at seaweedfs.invalid:8333 (SPOREPRINT_ENV_FILE=" in result.output
    missing = run("--env-file", str(tmp_path / "absent.env"), "manifests", "list", stack_dir=tmp_path)
    assert missing.exit_code == 2 and "does not exist" in missing.output


def test_a_settings_mistake_and_an_unreachable_redis_are_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    import redis
    from pydantic import ValidationError

    from shared.settings import Settings
    from sporeprint.cli import unreachable_line

    monkeypatch.setenv("SPOREPRINT_REDIS_URL", "redis://sporeprint:s3cret@127.0.0.1:1/0")
    line = unreachable_line(redis.exceptions.ConnectionError("Connection refused"))
    assert line is not None and line.startswith("cannot use Redis at redis://sporeprint:***@127.0.0.1:1/0")
    assert "s3cret" not in line
    with pytest.raises(ValidationError) as caught:
        Settings(s3_access_key="only-one")
    assert unreachable_line(caught.value) == (
        "settings: Value error, set both SPOREPRINT_S3_ACCESS_KEY and SPOREPRINT_S3_SECRET_KEY, or neither "
        "(then the AWS credential chain: instance or pod role)")
    assert unreachable_line(KeyError("a bug")) is None, "a bug keeps its traceback"


def test_no_s3_credentials_anywhere_is_one_line() -> None:
    from shared.credentials import NoCredentials
    from sporeprint.cli import unreachable_line

    line = unreachable_line(NoCredentials("no S3 credentials: set SPOREPRINT_S3_ACCESS_KEY ..."))
    assert line == "S3: no S3 credentials: set SPOREPRINT_S3_ACCESS_KEY ..."
