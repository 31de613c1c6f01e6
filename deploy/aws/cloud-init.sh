#!/usr/bin/env bash
# User data of the GPU instance. 02-launch-gpu.sh fills in @BUCKET@, @REGION@ and @PARAMETER_PREFIX@.
#   (no argument)  cloud-init runs it once, as root, at first boot: installs what the AMI lacks (Docker with the
#                  compose plugin, the NVIDIA driver, the NVIDIA container toolkit), fetches the source bundle,
#                  installs itself as /usr/local/sbin/sporeprint-instance and the systemd unit `sporeprint`, then
#                  reboots (a new driver) or starts the unit.
#   start          what the unit runs at every boot (after the driver reboot, a spot restart, a stop/start):
#                  writes the compose .env (root only) from the settings in the bucket and the secrets in SSM
#                  Parameter Store, starts docker-compose.yml (APIs, workers, Redis; S3 replaces SeaweedFS)
#                  and logs "done: the stack is up".
# The instance role is the only credential: the AWS CLI here and the services in their containers (IMDSv2,
# hop limit 2) find it through the AWS credential chain. No secret is fetched from S3 or kept in the user data.
# Progress: /var/log/sporeprint-bootstrap.log on the instance (and journalctl -u sporeprint).
set -euo pipefail
# (APP_DIR, BOOTSTRAP_LOG and RETRY_DELAY_S are set only by tests/unit/deploy/test_aws.py, which runs "start".)
BOOTSTRAP_LOG="${BOOTSTRAP_LOG:-/var/log/sporeprint-bootstrap.log}"
exec > >(tee -a "${BOOTSTRAP_LOG}") 2>&1

BUCKET="@BUCKET@"
REGION="@REGION@"
PARAMETER_PREFIX="@PARAMETER_PREFIX@"
APP_DIR="${APP_DIR:-/opt/sporeprint}"
SELF=/usr/local/sbin/sporeprint-instance
NEEDS_REBOOT=0
# SSM parameter (under PARAMETER_PREFIX) -> the .env variable; the same pairs as SECRET_PARAMETERS in common.sh.
SECRETS=(api-token=SPOREPRINT_API_TOKEN redis-password=SPOREPRINT_REDIS_PASSWORD)
export DEBIAN_FRONTEND=noninteractive
export PATH="${PATH}:/snap/bin" # where the AWS CLI is when this script installs it (below)

log() { printf '[sporeprint-bootstrap %s] %s\n' "$(date -u +%H:%M:%S)" "$*"; }

add_docker_repository() {
  apt-get update -q
  apt-get install -y -q ca-certificates curl gnupg
  install -m 0755 -d /etc/apt/keyrings
  curl -fsSL https://download.docker.com/linux/ubuntu/gpg -o /etc/apt/keyrings/docker.asc
  # shellcheck disable=SC1091  # the instance's own os-release
  . /etc/os-release
  echo "deb [arch=$(dpkg --print-architecture) signed-by=/etc/apt/keyrings/docker.asc] https://download.docker.com/linux/ubuntu ${VERSION_CODENAME} stable" \
    > /etc/apt/sources.list.d/docker.list
  apt-get update -q
}

# docker-compose.yml uses `depends_on: {required: false}` (MinIO absent beside S3): Compose 2.20 or newer.
MIN_COMPOSE_VERSION=2.24.0

compose_is_recent() {
  local version
  version="$(docker compose version --short 2>/dev/null | sed 's/^v//')" || return 1
  [[ -n "${version}" ]] && [[ "$(printf '%s\n%s\n' "${MIN_COMPOSE_VERSION}" "${version}" | sort -V | head -n 1)" == "${MIN_COMPOSE_VERSION}" ]]
}

install_docker() {
  if command -v docker >/dev/null 2>&1 && compose_is_recent; then
    log "docker and compose $(docker compose version --short) are there"
  elif command -v docker >/dev/null 2>&1; then
    log "installing a current docker compose plugin"
    add_docker_repository
    apt-get install -y -q docker-compose-plugin docker-buildx-plugin
  else
    log "installing docker"
    add_docker_repository
    apt-get install -y -q docker-ce docker-ce-cli containerd.io docker-buildx-plugin docker-compose-plugin
  fi
  systemctl enable --now docker
}

install_nvidia_driver() {
  if nvidia-smi >/dev/null 2>&1; then
    log "NVIDIA driver: $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | head -n 1)"
    return
  fi
  log "installing the NVIDIA driver (a reboot follows)"
  apt-get update -q
  apt-get install -y -q ubuntu-drivers-common
  ubuntu-drivers install --gpgpu
  NEEDS_REBOOT=1
}

install_container_toolkit() {
  if ! command -v nvidia-ctk >/dev/null 2>&1; then
    log "installing the NVIDIA container toolkit"
    curl -fsSL https://nvidia.github.io/libnvidia-container/gpgkey \
      | gpg --batch --yes --dearmor -o /usr/share/keyrings/nvidia-container-toolkit-keyring.gpg
    curl -fsSL https://nvidia.github.io/libnvidia-container/stable/deb/nvidia-container-toolkit.list \
      | sed 's#deb https://#deb [signed-by=/usr/share/keyrings/nvidia-container-toolkit-keyring.gpg] https://#g' \
      > /etc/apt/sources.list.d/nvidia-container-toolkit.list
    apt-get update -q
    apt-get install -y -q nvidia-container-toolkit
  fi
  nvidia-ctk runtime configure --runtime=docker
  systemctl restart docker
}

install_aws_cli() {
  if ! command -v aws >/dev/null 2>&1; then
    log "installing the AWS CLI"
    snap install aws-cli --classic
  fi
}

# Network calls at boot may come before the network or the role is ready: a few tries.
retry() {
  local attempt
  for attempt in 1 2 3 4 5 6 7 8 9 10; do
    if "$@"; then
      return 0
    fi
    # stderr: stdout may be a value being read
    log "attempt ${attempt} of 10 failed: $*" >&2
    [[ "${attempt}" == 10 ]] || sleep "${RETRY_DELAY_S:-6}"
  done
  return 1
}

fetch_stack() {
  log "fetching the source bundle from s3://${BUCKET}/deploy/"
  mkdir -p "${APP_DIR}"
  retry aws s3 cp --only-show-errors --region "${REGION}" "s3://${BUCKET}/deploy/sporeprint-src.tar.gz" \
    /tmp/sporeprint-src.tar.gz
  tar -xzf /tmp/sporeprint-src.tar.gz -C "${APP_DIR}"
  rm -f /tmp/sporeprint-src.tar.gz
}

secret() {
  aws ssm get-parameter --region "${REGION}" --name "${PARAMETER_PREFIX}/$1" --with-decryption \
    --query Parameter.Value --output text
}

# The compose .env, root only: the settings (no secrets) and the secrets, read anew at each start so that a
# changed setting or a rotated secret (aws ssm put-parameter --overwrite) applies on `systemctl restart sporeprint`.
write_env() {
  local env_tmp pair value
  env_tmp="$(mktemp "${APP_DIR}/.env.XXXXXX")" # mode 600; umask 077: the CLI replaces the file with its own
  if ! (umask 077 && retry aws s3 cp --only-show-errors --region "${REGION}" "s3://${BUCKET}/deploy/sporeprint.env" \
    "${env_tmp}"); then
    rm -f "${env_tmp}"
    log "error: cannot read the settings s3://${BUCKET}/deploy/sporeprint.env with the instance role"
    return 1
  fi
  for pair in "${SECRETS[@]}"; do
    if ! value="$(retry secret "${pair%%=*}")"; then
      rm -f "${env_tmp}"
      log "error: cannot read the secret ${PARAMETER_PREFIX}/${pair%%=*} with the instance role"
      return 1
    fi
    printf '%s=%s\n' "${pair#*=}" "${value}" >> "${env_tmp}"
  done
  mv "${env_tmp}" "${APP_DIR}/.env"
}

install_self() {
  install -m 0700 -o root -g root "${BASH_SOURCE[0]}" "${SELF}"
}

install_unit() {
  cat > /etc/systemd/system/sporeprint.service <<UNIT
[Unit]
Description=sporeprint (docker compose: APIs, workers, Redis)
Requires=docker.service
After=docker.service network-online.target
Wants=network-online.target

[Service]
Type=oneshot
RemainAfterExit=yes
WorkingDirectory=${APP_DIR}
Environment=PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/snap/bin
ExecStart=${SELF} start
ExecStop=/usr/bin/docker compose stop
TimeoutStartSec=3600

[Install]
WantedBy=multi-user.target
UNIT
  systemctl daemon-reload
  systemctl enable sporeprint.service
}

# Every boot, from the unit: the one place that logs the done line, so it is there after the driver reboot too.
start_stack() {
  log "writing ${APP_DIR}/.env and starting the stack (first build: about 10-15 minutes)"
  write_env
  cd "${APP_DIR}"
  docker compose up --detach --build --remove-orphans
  docker compose ps
  log "done: the stack is up"
}

bootstrap() {
  log "starting on $(hostname)"
  install_docker
  install_nvidia_driver
  install_container_toolkit
  install_aws_cli
  fetch_stack
  install_self
  install_unit
  if [[ "${NEEDS_REBOOT}" == 1 ]]; then
    log "rebooting to load the NVIDIA driver; after it the sporeprint unit starts the stack and logs here"
    systemctl reboot
    return
  fi
  systemctl start sporeprint.service # runs "${SELF} start", which logs the done line
}

main() {
  case "${1:-bootstrap}" in
    bootstrap) bootstrap ;;
    start) start_stack ;;
    *) log "usage: $0 [start]"; return 2 ;;
  esac
}

main "$@"
