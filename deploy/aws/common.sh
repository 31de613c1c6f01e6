#!/usr/bin/env bash
# Shared settings of the deploy/aws scripts; sourced, not run. Override any of them in the environment:
#   AWS_REGION=us-east-1 SPOREPRINT_S3_BUCKET=my-spores ./01-create-bucket.sh
# shellcheck disable=SC2034  # the variables are used by the scripts that source this file
set -euo pipefail

AWS_REGION="${AWS_REGION:-${AWS_DEFAULT_REGION:-eu-west-1}}"
export AWS_REGION AWS_DEFAULT_REGION="${AWS_REGION}"
# Every AWS resource these scripts create carries this name (and the tag project=<name>).
STACK_NAME="${STACK_NAME:-sporeprint}"
INSTANCE_TYPE="${INSTANCE_TYPE:-g5.xlarge}"
VOLUME_GB="${VOLUME_GB:-200}"
# Deep Learning Base AMI (NVIDIA driver, Docker, NVIDIA container toolkit), found through its public
# SSM parameter; set AMI_ID to use another Ubuntu 22.04/24.04 image (cloud-init.sh installs what is missing).
AMI_PARAMETER="${AMI_PARAMETER:-/aws/service/deeplearning/ami/x86_64/base-oss-nvidia-driver-gpu-ubuntu-22.04/latest/ami-id}"
AMI_ID="${AMI_ID:-}"
SSH_USER="${SSH_USER:-ubuntu}"

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "${HERE}/../.." && pwd)"
# The instance's settings: written by 01-create-bucket.sh, copied to s3://<bucket>/deploy/ by 02-launch-gpu.sh.
# No secrets: the API token and the Redis password are SecureString parameters under PARAMETER_PREFIX in SSM
# Parameter Store, which only the instance role (and you) may read; the S3 access is the instance role itself.
ENV_FILE="${ENV_FILE:-${HERE}/sporeprint.env}"
PARAMETER_PREFIX="${PARAMETER_PREFIX:-/${STACK_NAME}}"
# The secrets the instance reads at every start of the stack: parameter name -> the .env variable.
SECRET_PARAMETERS=(api-token redis-password)
secret_variable() {
  case "$1" in
    api-token) echo SPOREPRINT_API_TOKEN ;;
    redis-password) echo SPOREPRINT_REDIS_PASSWORD ;;
    *) die "no such secret: $1" ;;
  esac
}
KEY_FILE="${KEY_FILE:-${HOME}/.ssh/${STACK_NAME}-${AWS_REGION}.pem}"

log() { printf '[%s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

require() {
  local tool
  for tool in "$@"; do
    command -v "${tool}" >/dev/null 2>&1 || die "${tool} is not installed"
  done
}

account_id() { aws sts get-caller-identity --query Account --output text; }

# The bucket name: SPOREPRINT_S3_BUCKET, else the one 01-create-bucket.sh wrote into ENV_FILE,
# else <stack>-<account>-<region> (bucket names are global, so the account id keeps it unique).
bucket_name() {
  if [[ -n "${SPOREPRINT_S3_BUCKET:-}" ]]; then
    printf '%s\n' "${SPOREPRINT_S3_BUCKET}"
  elif [[ -f "${ENV_FILE}" ]] && grep -q '^SPOREPRINT_S3_BUCKET=' "${ENV_FILE}"; then
    sed -n 's/^SPOREPRINT_S3_BUCKET=//p' "${ENV_FILE}"
  else
    printf '%s-%s-%s\n' "${STACK_NAME}" "$(account_id)" "${AWS_REGION}"
  fi
}

# The running (or starting) GPU instance of this stack, if any.
instance_id() {
  aws ec2 describe-instances \
    --filters "Name=tag:Name,Values=${STACK_NAME}-gpu" "Name=instance-state-name,Values=pending,running,stopping,stopped" \
    --query 'Reservations[].Instances[].InstanceId' --output text
}

instance_host() {
  aws ec2 describe-instances --instance-ids "$1" \
    --query 'Reservations[0].Instances[0].PublicDnsName' --output text
}

# A secret's value, from SSM Parameter Store (decrypted; for this shell only).
secret() {
  aws ssm get-parameter --name "${PARAMETER_PREFIX}/$1" --with-decryption --query Parameter.Value --output text
}

# Lines of a settings file that look like a secret or a static key (nothing of the kind may reach S3).
secret_lines() {
  grep -nE '^[[:space:]]*(export[[:space:]]+)?(AWS_[A-Z0-9_]*|[A-Z0-9_]*(TOKEN|SECRET|PASSWORD|ACCESS_KEY)[A-Z0-9_]*)=.' "$1" || true
}
