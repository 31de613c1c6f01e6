#!/usr/bin/env bash
# Step 1: the S3 bucket that replaces SeaweedFS, the stack's secrets in SSM Parameter Store, and the instance's
# settings file (deploy/aws/sporeprint.env, no secrets in it).
# No IAM user and no access key: the services reach the bucket through the GPU instance's role
# (02-launch-gpu.sh grants it this bucket only), found by the AWS credential chain (shared/credentials.py).
# The API token and the Redis password are SecureString parameters <PARAMETER_PREFIX>/api-token and
# /redis-password (KMS-encrypted, never in S3, never in the user data), read by the instance at each start.
# Idempotent: run it again and it reuses what exists (it never replaces a secret or the settings file).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "$0")/common.sh"
require aws openssl

BUCKET="$(bucket_name)"

if aws s3api head-bucket --bucket "${BUCKET}" 2>/dev/null; then
  log "bucket ${BUCKET} exists"
else
  log "creating bucket ${BUCKET} in ${AWS_REGION}"
  if [[ "${AWS_REGION}" == "us-east-1" ]]; then
    aws s3api create-bucket --bucket "${BUCKET}" >/dev/null
  else
    aws s3api create-bucket --bucket "${BUCKET}" \
      --create-bucket-configuration "LocationConstraint=${AWS_REGION}" >/dev/null
  fi
fi
aws s3api put-public-access-block --bucket "${BUCKET}" --public-access-block-configuration \
  BlockPublicAcls=true,IgnorePublicAcls=true,BlockPublicPolicy=true,RestrictPublicBuckets=true
aws s3api put-bucket-encryption --bucket "${BUCKET}" --server-side-encryption-configuration \
  '{"Rules":[{"ApplyServerSideEncryptionByDefault":{"SSEAlgorithm":"AES256"}}]}'
aws s3api put-bucket-tagging --bucket "${BUCKET}" --tagging "TagSet=[{Key=project,Value=${STACK_NAME}}]"
# TLS only, for everyone (the services use SPOREPRINT_S3_SECURE=true).
aws s3api put-bucket-policy --bucket "${BUCKET}" --policy "$(cat <<JSON
{
  "Version": "2012-10-17",
  "Statement": [
    {"Sid": "TlsOnly", "Effect": "Deny", "Principal": "*", "Action": "s3:*",
     "Resource": ["arn:aws:s3:::${BUCKET}", "arn:aws:s3:::${BUCKET}/*"],
     "Condition": {"Bool": {"aws:SecureTransport": "false"}}}
  ]
}
JSON
)"

# The secrets: generated here once, kept in SSM (never printed, never on a command line: `ps` shows those).
WORK="$(mktemp -d)"
trap 'rm -rf "${WORK}"' EXIT
for name in "${SECRET_PARAMETERS[@]}"; do
  parameter="${PARAMETER_PREFIX}/${name}"
  if aws ssm get-parameter --name "${parameter}" --query Parameter.Name --output text >/dev/null 2>&1; then
    log "secret ${parameter} exists: keeping it"
    continue
  fi
  log "creating secret ${parameter} (SSM SecureString)"
  (umask 077 && printf '%s' "$(openssl rand -hex 32)" > "${WORK}/value")
  aws ssm put-parameter --name "${parameter}" --type SecureString --value "file://${WORK}/value" \
    --description "sporeprint ${name} ($(secret_variable "${name}"))" \
    --tags "Key=project,Value=${STACK_NAME}" >/dev/null
  rm -f "${WORK}/value"
done

if [[ -f "${ENV_FILE}" ]]; then
  if [[ -n "$(secret_lines "${ENV_FILE}")" ]]; then
    die "${ENV_FILE} holds secrets (written by an older version of this script: the IAM user's key, the token).
  The token now lives in SSM and the instance role replaces the key: delete the file and run this again;
  ./99-teardown.sh removes the old IAM user ${STACK_NAME}-app and its access keys."
  fi
  log "${ENV_FILE} exists: keeping it"
  exit 0
fi

log "writing ${ENV_FILE}"
cat > "${ENV_FILE}" <<ENV
# Settings of the GPU instance's compose stack (written by deploy/aws/01-create-bucket.sh). No secrets here:
# 02-launch-gpu.sh copies this file to s3://${BUCKET}/deploy/. The instance adds SPOREPRINT_API_TOKEN and
# SPOREPRINT_REDIS_PASSWORD from SSM (${PARAMETER_PREFIX}/*) at each start; its role is the S3 access.
# No "seaweedfs" profile: the bucket is AWS S3.
COMPOSE_PROFILES=
BIND_ADDRESS=127.0.0.1
REGISTRY=sporeprint
TAG=0.1.0
SPOREPRINT_ENVIRONMENT=production
SPOREPRINT_LOG_LEVEL=INFO
SPOREPRINT_LOG_FORMAT=json
SPOREPRINT_S3_ENDPOINT=s3.amazonaws.com
SPOREPRINT_S3_SECURE=true
SPOREPRINT_S3_REGION=${AWS_REGION}
SPOREPRINT_S3_BUCKET=${BUCKET}
# No S3 keys (neither the services' nor the admin's): the AWS credential chain finds the instance role
# (IMDSv2, hop limit 2 so that the containers reach it); the bucket exists already.
# The compose Redis on the instance, as the ACL user sporeprint.
SPOREPRINT_REDIS_URL=
SPOREPRINT_REDIS_USERNAME=sporeprint
ENV
log "done: bucket s3://${BUCKET}, secrets in SSM ${PARAMETER_PREFIX}/, settings in ${ENV_FILE}"
