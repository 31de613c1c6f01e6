#!/usr/bin/env bash
# User data of the GPU instance: cloud-init runs it once, as root, at first boot.
# 02-launch-gpu.sh fills in @BUCKET@ and @REGION@. It installs what the AMI lacks (Docker with the compose
# plugin, the NVIDIA driver, the NVIDIA container toolkit), fetches the source bundle and the .env that
# 02-launch-gpu.sh put in the bucket, and starts docker-compose.yml (APIs, workers, Redis; S3 replaces MinIO)
# through a systemd unit, so the stack also comes back after a reboot.
# Progress: /var/log/sporeprint-bootstrap.log on the instance.
set -euo pipefail
exec > >(tee -a /var/log/sporeprint-bootstrap.log) 2>&1

BUCKET="@BUCKET@"
REGION="@REGION@"
APP_DIR=/opt/sporeprint
NEEDS_REBOOT=0
export DEBIAN_FRONTEND=noninteractive

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

fetch_stack() {
  log "fetching the source bundle and settings from s3://${BUCKET}/deploy/"
  mkdir -p "${APP_DIR}"
  aws s3 cp --region "${REGION}" "s3://${BUCKET}/deploy/sporeprint-src.tar.gz" /tmp/sporeprint-src.tar.gz
  tar -xzf /tmp/sporeprint-src.tar.gz -C "${APP_DIR}"
  rm -f /tmp/sporeprint-src.tar.gz
  (umask 077 && aws s3 cp --region "${REGION}" "s3://${BUCKET}/deploy/sporeprint.env" "${APP_DIR}/.env")
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
ExecStart=/usr/bin/docker compose up --detach --build --remove-orphans
ExecStop=/usr/bin/docker compose stop
TimeoutStartSec=3600

[Install]
WantedBy=multi-user.target
UNIT
  systemctl daemon-reload
  systemctl enable sporeprint.service
}

main() {
  log "starting on $(hostname)"
  install_docker
  install_nvidia_driver
  install_container_toolkit
  install_aws_cli
  fetch_stack
  install_unit
  if [[ "${NEEDS_REBOOT}" == 1 ]]; then
    log "rebooting to load the NVIDIA driver; the stack starts after the reboot"
    systemctl reboot
    return
  fi
  log "building the images and starting the stack (first build: about 10-15 minutes)"
  systemctl start sporeprint.service
  docker compose --project-directory "${APP_DIR}" ps
  log "done: the stack is up"
}

main "$@"
