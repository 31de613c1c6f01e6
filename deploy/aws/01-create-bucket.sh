#!/usr/bin/env bash
# Step 1: the S3 bucket that replaces MinIO, an IAM user the services use to reach it (access limited to
# this one bucket), and the compose .env for the GPU instance (deploy/aws/sporeprint.env).
# Idempotent: run it again and it reuses what exists (it creates a new access key only if the env file is gone).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "$0")/common.sh"
require aws openssl

BUCKET="$(bucket_name)"
USER_NAME="${STACK_NAME}-app"

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

if ! aws iam get-user --user-name "${USER_NAME}" >/dev/null 2>&1; then
  log "creating IAM user ${USER_NAME}"
  aws iam create-user --user-name "${USER_NAME}" --tags "Key=project,Value=${STACK_NAME}" >/dev/null
fi
policy=$(cat <<JSON
{
  "Version": "2012-10-17",
  "Statement": [
    {"Effect": "Allow", "Action": ["s3:ListBucket", "s3:GetBucketLocation"],
     "Resource": "arn:aws:s3:::${BUCKET}"},
    {"Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
     "Resource": "arn:aws:s3:::${BUCKET}/*"}
  ]
}
JSON
)
aws iam put-user-policy --user-name "${USER_NAME}" --policy-name "${STACK_NAME}-bucket" --policy-document "${policy}"

if [[ -f "${ENV_FILE}" ]]; then
  log "${ENV_FILE} exists: keeping its keys and token"
  exit 0
fi

log "creating an access key for ${USER_NAME} and writing ${ENV_FILE}"
read -r access_key secret_key < <(aws iam create-access-key --user-name "${USER_NAME}" \
  --query 'AccessKey.[AccessKeyId,SecretAccessKey]' --output text)
umask 077
cat > "${ENV_FILE}" <<ENV
# compose .env for the GPU instance (written by deploy/aws/01-create-bucket.sh). Secret: never commit it.
# No "minio" profile: the bucket is AWS S3.
COMPOSE_PROFILES=
BIND_ADDRESS=127.0.0.1
REGISTRY=sporeprint
TAG=0.1.0
SPOREPRINT_ENVIRONMENT=production
SPOREPRINT_LOG_LEVEL=INFO
SPOREPRINT_API_TOKEN=$(openssl rand -hex 32)
SPOREPRINT_S3_ENDPOINT=s3.amazonaws.com
SPOREPRINT_S3_SECURE=true
SPOREPRINT_S3_REGION=${AWS_REGION}
SPOREPRINT_S3_BUCKET=${BUCKET}
SPOREPRINT_S3_ACCESS_KEY=${access_key}
SPOREPRINT_S3_SECRET_KEY=${secret_key}
ENV
log "done: bucket s3://${BUCKET}, settings in ${ENV_FILE}"
