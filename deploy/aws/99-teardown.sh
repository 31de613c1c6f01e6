#!/usr/bin/env bash
# Remove what 02-launch-gpu.sh created: the spot request (if any), the instance (and its disk, with Redis and
# the job records on it), security group, key pair, instance role, and the deploy bundle and settings in
# s3://<bucket>/deploy/.
# With --delete-bucket also what 01-create-bucket.sh created: the bucket with every image, manifest and model
# in it, the secrets in SSM Parameter Store and deploy/aws/sporeprint.env (asks you to type the bucket name;
# --yes skips the question).
# The IAM user <stack>-app and its access keys, which earlier versions of 01-create-bucket.sh created, are
# removed whenever they are found: nothing uses them any more.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "$0")/common.sh"
require aws

DELETE_BUCKET=0
ASSUME_YES=0
for arg in "$@"; do
  case "${arg}" in
    --delete-bucket) DELETE_BUCKET=1 ;;
    --yes) ASSUME_YES=1 ;;
    *) die "unknown option ${arg} (use --delete-bucket, --yes)" ;;
  esac
done
BUCKET="$(bucket_name)"
ROLE="${STACK_NAME}-gpu"
KEY_NAME="${STACK_NAME}-${AWS_REGION}"

INSTANCE_IDS="$(instance_id)"
# A persistent spot request launches a new instance when its instance goes away: cancel it first (found by its
# tag, and through the instance in case the tag is missing).
SPOT_REQUESTS="$(aws ec2 describe-spot-instance-requests \
  --filters "Name=tag:project,Values=${STACK_NAME}" "Name=state,Values=open,active,disabled" \
  --query 'SpotInstanceRequests[].SpotInstanceRequestId' --output text)"
if [[ -n "${INSTANCE_IDS}" ]]; then
  # shellcheck disable=SC2086  # a space-separated list of ids
  SPOT_REQUESTS+=" $(aws ec2 describe-instances --instance-ids ${INSTANCE_IDS} \
    --query 'Reservations[].Instances[].SpotInstanceRequestId' --output text)"
fi
SPOT_REQUESTS="$(tr -s '[:space:]' '\n' <<<"${SPOT_REQUESTS}" | { grep -v -e '^$' -e '^None$' || true; } | sort -u \
  | tr '\n' ' ')"
if [[ -n "${SPOT_REQUESTS// /}" ]]; then
  log "cancelling spot request(s) ${SPOT_REQUESTS}"
  # shellcheck disable=SC2086  # a space-separated list of ids
  aws ec2 cancel-spot-instance-requests --spot-instance-request-ids ${SPOT_REQUESTS} >/dev/null
fi

if [[ -n "${INSTANCE_IDS}" ]]; then
  log "terminating ${INSTANCE_IDS}"
  # shellcheck disable=SC2086  # a space-separated list of ids
  aws ec2 terminate-instances --instance-ids ${INSTANCE_IDS} >/dev/null
  # shellcheck disable=SC2086
  aws ec2 wait instance-terminated --instance-ids ${INSTANCE_IDS}
fi

SG_IDS="$(aws ec2 describe-security-groups --filters "Name=group-name,Values=${STACK_NAME}-gpu" \
  --query 'SecurityGroups[].GroupId' --output text)"
for sg in ${SG_IDS}; do
  log "deleting security group ${sg}"
  aws ec2 delete-security-group --group-id "${sg}"
done

if aws ec2 describe-key-pairs --key-names "${KEY_NAME}" >/dev/null 2>&1; then
  log "deleting key pair ${KEY_NAME} and ${KEY_FILE}"
  aws ec2 delete-key-pair --key-name "${KEY_NAME}"
  rm -f "${KEY_FILE}"
fi

if aws iam get-instance-profile --instance-profile-name "${ROLE}" >/dev/null 2>&1; then
  aws iam remove-role-from-instance-profile --instance-profile-name "${ROLE}" --role-name "${ROLE}" || true
  aws iam delete-instance-profile --instance-profile-name "${ROLE}"
fi
if aws iam get-role --role-name "${ROLE}" >/dev/null 2>&1; then
  log "deleting role ${ROLE}"
  aws iam detach-role-policy --role-name "${ROLE}" \
    --policy-arn arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore 2>/dev/null || true
  # -deploy-bundle: the policy of earlier versions
  for policy in bucket secrets deploy-bundle; do
    aws iam delete-role-policy --role-name "${ROLE}" --policy-name "${STACK_NAME}-${policy}" 2>/dev/null || true
  done
  aws iam delete-role --role-name "${ROLE}"
fi

LEGACY_USER="${STACK_NAME}-app"
if aws iam get-user --user-name "${LEGACY_USER}" >/dev/null 2>&1; then
  log "deleting the IAM user ${LEGACY_USER} and its access keys (left by an earlier version of the scripts)"
  for key in $(aws iam list-access-keys --user-name "${LEGACY_USER}" --query 'AccessKeyMetadata[].AccessKeyId' \
    --output text); do
    aws iam delete-access-key --user-name "${LEGACY_USER}" --access-key-id "${key}"
  done
  aws iam delete-user-policy --user-name "${LEGACY_USER}" --policy-name "${STACK_NAME}-bucket" 2>/dev/null || true
  aws iam delete-user --user-name "${LEGACY_USER}"
fi

if aws s3api head-bucket --bucket "${BUCKET}" 2>/dev/null; then
  log "removing the deploy bundle and settings from s3://${BUCKET}/deploy/"
  aws s3 rm --only-show-errors --recursive "s3://${BUCKET}/deploy/"
fi

if [[ "${DELETE_BUCKET}" == 1 ]]; then
  if [[ "${ASSUME_YES}" != 1 ]]; then
    read -r -p "Delete s3://${BUCKET} and everything in it? Type the bucket name: " answer
    [[ "${answer}" == "${BUCKET}" ]] || die "not deleting the bucket"
  fi
  if aws s3api head-bucket --bucket "${BUCKET}" 2>/dev/null; then
    log "deleting s3://${BUCKET}"
    aws s3 rb --force "s3://${BUCKET}" >/dev/null
  fi
  for name in "${SECRET_PARAMETERS[@]}"; do
    if aws ssm delete-parameter --name "${PARAMETER_PREFIX}/${name}" 2>/dev/null; then
      log "deleted the secret ${PARAMETER_PREFIX}/${name}"
    fi
  done
  rm -f "${ENV_FILE}"
else
  log "kept s3://${BUCKET} (images, manifests, models), the secrets in SSM ${PARAMETER_PREFIX}/ and ${ENV_FILE};" \
    "--delete-bucket removes them"
fi
log "teardown done"
