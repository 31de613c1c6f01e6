"""docker-compose.yml against the compose specification and against the code it runs."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import jsonschema
import pytest
from pydantic import ValidationError

from shared.queue import REDIS_ACL_RULES
from shared.settings import Settings
from sporeprint.s3_identities import ADMIN_VARIABLES

from .conftest import (
    API_PORTS,
    COMPOSE_FILE,
    DEPLOY,
    ENV_EXAMPLE,
    ROOT,
    MissingVariable,
    assert_worker_command,
    defines_app,
    entry_module_file,
    interpolate,
    interpolate_string,
    read_env_file,
    realistic_env,
    tool,
)

pytestmark = pytest.mark.unit

SCHEMA = json.loads((DEPLOY / "schemas" / "compose-spec.json").read_text())
SPOREPRINT_SERVICES = (*API_PORTS, "create-bucket", "cpu-worker", "train-worker")


def service_env(service: dict[str, Any]) -> dict[str, str]:
    environment = service.get("environment", {})
    if isinstance(environment, list):
        environment = dict(item.partition("=")[::2] for item in environment)
    return {key: "" if value is None else str(value) for key, value in environment.items()}


def dockerfile_cmd(dockerfile: Path) -> list[str]:
    lines = [line for line in dockerfile.read_text().splitlines() if line.startswith("CMD ")]
    assert lines, f"{dockerfile.name} has no CMD"
    parsed = json.loads(lines[-1][4:])
    assert isinstance(parsed, list)
    return [str(item) for item in parsed]


def option(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


def published_container_ports(service: dict[str, Any]) -> set[int]:
    ports: set[int] = set()
    for entry in service.get("ports", []):
        if isinstance(entry, dict):
            ports.add(int(entry["target"]))
        else:
            ports.add(int(str(entry).rsplit(":", 1)[-1].split("/")[0]))
    return ports


# --- the specification -------------------------------------------------------------------------------------

def test_the_vendored_schema_is_the_compose_specification() -> None:
    jsonschema.Draft7Validator.check_schema(SCHEMA)
    assert SCHEMA["$id"] == "compose_spec.json"
    assert "deploy" in SCHEMA["definitions"]["service"]["properties"]


def test_compose_file_validates_against_the_compose_specification(compose_raw: dict, compose: dict) -> None:
    validator = jsonschema.Draft7Validator(SCHEMA)
    for label, document in (("as written", compose_raw), ("after interpolation", compose)):
        errors = sorted(validator.iter_errors(document), key=lambda error: list(error.absolute_path))
        assert not errors, f"{label}: " + "; ".join(
            f"{'/'.join(map(str, error.absolute_path))}: {error.message}" for error in errors[:5])


def test_the_schema_check_catches_a_broken_file(compose: dict) -> None:
    """The validation above can fail: a misspelt key and a wrong GPU reservation are both refused."""
    validator = jsonschema.Draft7Validator(SCHEMA)
    broken = json.loads(json.dumps(compose))
    broken["services"]["redis"]["helthcheck"] = broken["services"]["redis"].pop("healthcheck")
    assert list(validator.iter_errors(broken))
    broken = json.loads(json.dumps(compose))
    del broken["services"]["train-worker"]["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"]
    assert list(validator.iter_errors(broken))


def test_docker_compose_itself_accepts_the_file(tmp_path: Path) -> None:
    """The real `docker compose config` (needs no engine) when a standalone binary is installed."""
    binary = tool("docker-compose")
    if binary is None:
        pytest.skip("no docker-compose binary here; the schema check above still ran")
    (tmp_path / "docker-compose.yml").write_text(COMPOSE_FILE.read_text())
    env = realistic_env()
    (tmp_path / ".env").write_text("".join(f"{key}={value}\n" for key, value in env.items()))
    for dockerfile in (DEPLOY / "docker").glob("*.Dockerfile"):
        target = tmp_path / "deploy" / "docker" / dockerfile.name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(dockerfile.read_text())
    for profiles in ("seaweedfs", ""):  # with SeaweedFS, and with S3 in its place
        (tmp_path / ".env").write_text("".join(
            f"{key}={profiles if key == 'COMPOSE_PROFILES' else value}\n" for key, value in env.items()))
        result = subprocess.run([binary, "config", "--quiet"], cwd=tmp_path, capture_output=True, text=True,
                                timeout=60, check=False)
        assert result.returncode == 0, result.stderr


# --- interpolation and the env file ------------------------------------------------------------------------

def test_interpolation_follows_compose_rules() -> None:
    env = {"SET": "x", "EMPTY": ""}
    assert interpolate_string("${SET:-d}/${EMPTY:-d}/${UNSET:-d}", env) == "x/d/d"
    assert interpolate_string("${EMPTY-d}/${UNSET-d}/$$SET/$SET", env) == "/d/$SET/x"
    assert interpolate_string("${SET:+on}/${EMPTY:+on}", env) == "on/"
    with pytest.raises(MissingVariable, match="EMPTY: say so"):
        interpolate_string("${EMPTY:?say so}", env)


def test_compose_refuses_to_start_without_the_secrets(compose_raw: dict) -> None:
    env = realistic_env()
    for secret in ("SPOREPRINT_API_TOKEN", "SPOREPRINT_REDIS_PASSWORD"):  # the S3 keys: s3_identities refuses
        with pytest.raises(MissingVariable, match=secret):
            interpolate(compose_raw, {key: value for key, value in env.items() if key != secret})


def test_every_variable_the_compose_file_uses_is_in_env_example() -> None:
    used = set(re.findall(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)", COMPOSE_FILE.read_text()))
    missing = used - set(read_env_file(ENV_EXAMPLE))
    assert not missing, f"add to .env.example: {sorted(missing)}"


def test_env_example_sets_only_known_settings(env_names: dict) -> None:
    env = read_env_file(ENV_EXAMPLE)
    unknown = sorted(key for key in env if key.startswith("SPOREPRINT_") and key not in env_names
                     and key not in ADMIN_VARIABLES)
    assert not unknown, f"not a field of any settings class: {unknown}"


def test_env_example_placeholders_are_refused_in_production(compose_raw: dict) -> None:
    """Copying .env.example without setting the secrets must not give a running production system."""
    compose = interpolate(compose_raw, read_env_file(ENV_EXAMPLE))
    env = service_env(compose["services"]["trainer"])
    assert env["SPOREPRINT_ENVIRONMENT"] == "production"
    with pytest.raises(ValidationError, match="placeholder"):
        Settings.model_validate({key.removeprefix("SPOREPRINT_").lower(): value for key, value in env.items()})


# --- services and the code they run ------------------------------------------------------------------------

def test_the_whole_system_is_there(compose: dict) -> None:
    services = compose["services"]
    for name in ("seaweedfs", "s3-identities", "redis", *SPOREPRINT_SERVICES):
        assert name in services, f"docker-compose.yml has no service {name!r}"


def test_every_built_service_has_its_dockerfile(compose: dict) -> None:
    for name, service in compose["services"].items():
        if "build" not in service:
            continue
        assert service["build"]["context"] == "."
        dockerfile = ROOT / service["build"]["dockerfile"]
        assert dockerfile.is_file(), f"{name}: {dockerfile} does not exist"
        assert service["image"].split("/")[-1].split(":")[0] == dockerfile.name.removesuffix(".Dockerfile"), (
            f"{name}: the image name should name its Dockerfile")
    for name in SPOREPRINT_SERVICES:
        assert "build" in compose["services"][name], f"{name} must be built from this repository"


@pytest.mark.parametrize("api", sorted(API_PORTS))
def test_api_entry_point_port_and_health_check_agree(compose: dict, api: str) -> None:
    service = compose["services"][api]
    port = API_PORTS[api]
    args = dockerfile_cmd(ROOT / service["build"]["dockerfile"])
    command = [str(part) for part in service.get("command", args)]
    assert command[0] == "uvicorn"
    app = command[1]
    assert app == f"services.{api}.main:app"
    module_file = entry_module_file(app)
    assert module_file.is_file(), f"{app}: {module_file.relative_to(ROOT)} does not exist yet"
    assert defines_app(module_file), f"{module_file.relative_to(ROOT)} defines no top-level `app`"
    assert option(command, "--host") == "0.0.0.0"
    assert int(option(command, "--port")) == port
    assert f"EXPOSE {port}" in (ROOT / service["build"]["dockerfile"]).read_text()
    assert published_container_ports(service) == {port}

    test = service["healthcheck"]["test"]
    urls = re.findall(r"https?://[^'\" ]+", " ".join(test))
    assert len(urls) == 1, test
    url = urlparse(urls[0])
    assert (url.hostname, url.port, url.path) == ("127.0.0.1", port, "/health")


def test_service_urls_point_at_the_services(compose: dict) -> None:
    for name in SPOREPRINT_SERVICES:
        env = service_env(compose["services"][name])
        for api, port in API_PORTS.items():
            url = urlparse(env[f"SPOREPRINT_{api.upper()}_URL"])
            assert (url.scheme, url.hostname, url.port) == ("http", api, port), f"{name}: {api} URL"
        redis = urlparse(env["SPOREPRINT_REDIS_URL"])
        assert (redis.hostname, redis.port) == ("redis", 6379)
        assert env["SPOREPRINT_S3_ENDPOINT"] == "seaweedfs:8333"


def test_environment_sets_only_settings_fields(compose: dict, env_names: dict) -> None:
    for name, service in compose["services"].items():
        unknown = sorted(key for key in service_env(service)
                         if key.startswith("SPOREPRINT_") and key not in env_names
                         and not (name == "s3-identities" and key in ADMIN_VARIABLES))
        assert not unknown, f"{name} sets variables no settings class reads: {unknown}"


def test_environment_parses_as_settings(compose: dict) -> None:
    """Types too: every value a service gets is one the settings accept (booleans, URLs, ...)."""
    for name in SPOREPRINT_SERVICES:
        env = service_env(compose["services"][name])
        fields = {key.removeprefix("SPOREPRINT_").lower(): value for key, value in env.items()
                  if key.removeprefix("SPOREPRINT_").lower() in Settings.model_fields and value != ""}
        settings = Settings.model_validate(fields)
        assert settings.environment == "production"
        assert settings.s3_secure is False
        assert settings.api_token == realistic_env()["SPOREPRINT_API_TOKEN"]


def test_the_services_get_their_scoped_s3_user_and_only_the_bucket_maker_the_admin(compose: dict) -> None:
    services = compose["services"]
    identities = service_env(services["s3-identities"])
    env = realistic_env()
    assert services["s3-identities"]["command"] == ["python", "-m", "sporeprint.s3_identities",
                                                     "/etc/seaweedfs/s3.json"]
    assert "-s3.config=/etc/seaweedfs/s3.json" in services["seaweedfs"]["command"]
    for name in ("downloader", "curator", "trainer", "inference", "cpu-worker", "train-worker"):
        service = service_env(services[name])
        assert service["SPOREPRINT_S3_ACCESS_KEY"] == identities["SPOREPRINT_S3_ACCESS_KEY"] == env[
            "SPOREPRINT_S3_ACCESS_KEY"], name
        assert service["SPOREPRINT_S3_SECRET_KEY"] == identities["SPOREPRINT_S3_SECRET_KEY"], name
        assert not set(ADMIN_VARIABLES) & set(service), f"{name} must not see the S3 admin keys"
        assert env["SPOREPRINT_S3_ADMIN_SECRET_KEY"] not in service.values(), name
    bucket_maker = service_env(services["create-bucket"])
    assert bucket_maker["SPOREPRINT_S3_ACCESS_KEY"] == identities["SPOREPRINT_S3_ADMIN_ACCESS_KEY"]
    assert bucket_maker["SPOREPRINT_S3_SECRET_KEY"] == identities["SPOREPRINT_S3_ADMIN_SECRET_KEY"]
    for name in ("seaweedfs", "s3-identities"):
        assert "seaweedfs" in services[name]["profiles"]
    assert "seaweedfs" in read_env_file(ENV_EXAMPLE)["COMPOSE_PROFILES"].split(",")


def test_without_s3_keys_the_services_use_the_credential_chain(compose_raw: dict) -> None:
    """AWS: no keys in .env and no seaweedfs profile; the services then get no keys (the instance role)."""
    env = {key: value for key, value in realistic_env().items()
           if key not in ("SPOREPRINT_S3_ACCESS_KEY", "SPOREPRINT_S3_SECRET_KEY", *ADMIN_VARIABLES)}
    compose = interpolate({**compose_raw, "services": {name: service for name, service in compose_raw[
        "services"].items() if "seaweedfs" not in service.get("profiles", [])}}, env)
    trainer = service_env(compose["services"]["trainer"])
    fields = {key.removeprefix("SPOREPRINT_").lower(): value for key, value in trainer.items() if value != ""}
    settings = Settings.model_validate(fields)
    assert settings.s3_access_key is None and settings.s3_secret_key is None


def test_redis_requires_its_acl_user_and_the_services_log_in_as_it(compose: dict) -> None:
    services = compose["services"]
    redis = services["redis"]
    script = redis["entrypoint"][2]
    assert redis["entrypoint"][:2] == ["sh", "-c"] and "exec redis-server --aclfile" in script
    assert f"'{REDIS_ACL_RULES}'" in script, "Redis must grant the rules shared.queue.REDIS_ACL_RULES names"
    assert "user default off" in script
    redis_env = service_env(redis)
    for name in SPOREPRINT_SERVICES:
        env = service_env(services[name])
        assert env["SPOREPRINT_REDIS_USERNAME"] == redis_env["SPOREPRINT_REDIS_USERNAME"] == "sporeprint", name
        assert env["SPOREPRINT_REDIS_PASSWORD"] == redis_env["SPOREPRINT_REDIS_PASSWORD"], name
    assert redis_env["REDISCLI_AUTH"] == redis_env["SPOREPRINT_REDIS_PASSWORD"]


def test_redis_url_is_overridable_for_another_host(compose_raw: dict) -> None:
    env = {**realistic_env(), "SPOREPRINT_REDIS_URL": "rediss://10.0.1.5:6380/0"}
    compose = interpolate(compose_raw, env)
    assert service_env(compose["services"]["cpu-worker"])["SPOREPRINT_REDIS_URL"] == "rediss://10.0.1.5:6380/0"


def test_start_order(compose: dict) -> None:
    services = compose["services"]
    for name in SPOREPRINT_SERVICES:
        if name == "create-bucket":
            continue
        depends = services[name]["depends_on"]
        assert depends["redis"]["condition"] == "service_healthy", name
        assert depends["create-bucket"]["condition"] == "service_completed_successfully", name
    bucket = services["create-bucket"]
    assert bucket["depends_on"]["seaweedfs"] == {"condition": "service_healthy", "required": False}
    assert services["seaweedfs"]["depends_on"]["s3-identities"]["condition"] == "service_completed_successfully"
    assert bucket["restart"] == "no"
    assert "ensure_bucket()" in " ".join(bucket["command"])
    for name, service in services.items():  # a service_healthy condition needs a health check to wait on
        for dependency, rule in service.get("depends_on", {}).items():
            assert dependency in services, f"{name} depends on unknown {dependency}"
            if rule["condition"] == "service_healthy":
                assert "healthcheck" in services[dependency], f"{name} waits for {dependency}'s health check"


def test_workers_listen_on_the_right_queues(compose: dict) -> None:
    services = compose["services"]
    assert_worker_command(services["cpu-worker"]["command"], ("harvest", "curate"))
    assert_worker_command(services["train-worker"]["command"], ("train",))
    assert services["cpu-worker"]["build"]["dockerfile"] == "deploy/docker/curator.Dockerfile"
    assert services["train-worker"]["build"]["dockerfile"] == "deploy/docker/trainer-gpu.Dockerfile"


TRAIN_WORKERS = {"train-worker": "0", "train-worker-1": "1", "train-worker-2": "2", "train-worker-3": "3"}


def test_each_training_worker_reserves_its_own_nvidia_gpu(compose: dict) -> None:
    services = compose["services"]
    for name, gpu in TRAIN_WORKERS.items():
        devices = services[name]["deploy"]["resources"]["reservations"]["devices"]
        assert devices == [{"driver": "nvidia", "device_ids": [gpu], "capabilities": ["gpu"]}], name
        assert services[name].get("profiles", []) == ([] if gpu == "0" else [f"gpu-{gpu}"]), name
        same = {key: value for key, value in services[name].items() if key not in ("deploy", "profiles")}
        assert same == {key: value for key, value in services["train-worker"].items() if key != "deploy"}, name
    for name, service in services.items():
        if name not in TRAIN_WORKERS:
            assert "deploy" not in service, f"only the training workers need a GPU, not {name}"


def test_state_lives_in_named_volumes(compose: dict) -> None:
    declared = set(compose["volumes"])
    used: set[str] = set()
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0] if isinstance(volume, str) else volume["source"]
            assert not source.startswith((".", "/")), f"{name}: use a named volume, not the path {source}"
            assert source in declared, f"{name}: volume {source} is not declared"
            used.add(source)
    assert used == declared
    mounts = {name: [str(v).split(":")[1] for v in service.get("volumes", [])]
              for name, service in compose["services"].items()}
    assert "/data" in mounts["redis"] and "/data" in mounts["seaweedfs"]
    assert "--appendonly" in compose["services"]["redis"]["command"]


def test_nothing_is_published_beyond_the_bind_address(compose: dict) -> None:
    """Ports are published on BIND_ADDRESS (127.0.0.1 by default), never on every interface by omission."""
    for name, service in compose["services"].items():
        for entry in service.get("ports", []):
            host_ip = str(entry).split(":")[0]
            assert host_ip == "127.0.0.1", f"{name}: {entry}"
    assert "ports" not in compose["services"]["redis"] and "ports" not in compose["services"]["seaweedfs"]
    assert "redis-cli --user" in " ".join(compose["services"]["redis"]["healthcheck"]["test"])


def test_third_party_images_are_pinned(compose: dict) -> None:
    for name, service in compose["services"].items():
        if "build" in service:
            continue
        image = service["image"]
        assert re.fullmatch(r"[\w./-]+:\d[\w.-]*@sha256:[0-9a-f]{64}", image), (
            f"{name}: pin {image} by version and digest (deploy/README.md: updating the images)")


def test_service_knobs_in_env_reach_the_services(compose: dict) -> None:
    """Compose reads .env only for ${...}; env_file passes the rest (e.g. SPOREPRINT_DOWNLOADER_*) through."""
    for name in SPOREPRINT_SERVICES:
        assert compose["services"][name]["env_file"] == [{"path": ".env", "required": False}], name


def test_the_settings_scan_finds_every_service_config(env_names: dict) -> None:
    """The environment checks above are only as good as the scan: each services/<svc>/core/config.py counts."""
    for config in ROOT.glob("services/*/core/config.py"):
        prefix = f"SPOREPRINT_{config.parts[-3].upper()}_"
        assert any(name.startswith(prefix) and env_names[name].__module__.startswith("services.")
                   for name in env_names), f"no settings class found in {config.relative_to(ROOT)}"
    assert "SPOREPRINT_S3_ENDPOINT" in env_names and "SPOREPRINT_API_TOKEN" in env_names


# --- docker-compose.worker.yml: workers on another host ------------------------------------------------------

WORKER_COMPOSE = ROOT / "docker-compose.worker.yml"


def test_worker_only_file_runs_only_workers_against_the_main_hosts_redis(compose: dict) -> None:
    import yaml

    raw = yaml.safe_load(WORKER_COMPOSE.read_text())
    remote = {**realistic_env(), "SPOREPRINT_REDIS_URL": "redis://10.0.1.5:6379/0",
              "SPOREPRINT_S3_ENDPOINT": "10.0.1.5:8333", "SPOREPRINT_CURATOR_URL": "http://10.0.1.5:8002"}
    workers = interpolate(raw, remote)
    errors = list(jsonschema.Draft7Validator(SCHEMA).iter_errors(workers))
    assert not errors, errors[:3]
    assert set(workers["services"]) == {"cpu-worker", "train-worker", *(f"train-worker-{n}" for n in (1, 2, 3))}
    for name, service in workers["services"].items():
        main = compose["services"][name]
        assert service.get("deploy") == main.get("deploy") and service.get("profiles") == main.get("profiles"), name
        assert service["command"] == main["command"] and service["build"] == main["build"], name
        env = service_env(service)
        assert env["SPOREPRINT_REDIS_URL"] == "redis://10.0.1.5:6379/0", name
        fields = {key.removeprefix("SPOREPRINT_").lower(): value for key, value in env.items()
                  if key.removeprefix("SPOREPRINT_").lower() in Settings.model_fields and value != ""}
        assert Settings.model_validate(fields).redis_has_password, name
    for needed in ("SPOREPRINT_REDIS_URL", "SPOREPRINT_S3_ENDPOINT", "SPOREPRINT_REDIS_PASSWORD",
                   "SPOREPRINT_CURATOR_URL"):
        with pytest.raises(MissingVariable, match=needed):  # no silent fallback to a Redis on this host
            interpolate(raw, {key: value for key, value in remote.items() if key != needed})


def test_the_gpu_image_leaves_the_choice_of_gpus_to_the_runtime() -> None:
    dockerfile = (DEPLOY / "docker" / "trainer-gpu.Dockerfile").read_text()
    assert "NVIDIA_VISIBLE_DEVICES" not in dockerfile.replace("No NVIDIA_VISIBLE_DEVICES here", "")
