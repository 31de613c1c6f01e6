#!/usr/bin/env bash
# Remove what 02-launch-gpu.sh created: the instance (and its disk), security group, key pair, instance
# role, and the deploy bundle with the settings in s3://<bucket>/deploy/.
# With --delete-bucket also the bucket with every image, manifest and model in it, the IAM user and
# deploy/aws/sporeprint.env (asks you to type the bucket name; --yes skips the question).
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
    --policy-arn arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore || true
  aws iam delete-role-policy --role-name "${ROLE}" --policy-name "${STACK_NAME}-deploy-bundle" || true
  aws iam delete-role --role-name "${ROLE}"
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
  USER_NAME="${STACK_NAME}-app"
  if aws iam get-user --user-name "${USER_NAME}" >/dev/null 2>&1; then
    log "deleting IAM user ${USER_NAME}"
    for key in $(aws iam list-access-keys --user-name "${USER_NAME}" --query 'AccessKeyMetadata[].AccessKeyId' \
      --output text); do
      aws iam delete-access-key --user-name "${USER_NAME}" --access-key-id "${key}"
    done
    aws iam delete-user-policy --user-name "${USER_NAME}" --policy-name "${STACK_NAME}-bucket" || true
    aws iam delete-user --user-name "${USER_NAME}"
  fi
  rm -f "${ENV_FILE}"
else
  log "kept s3://${BUCKET} (images, manifests, models) and ${ENV_FILE}; --delete-bucket removes them"
fi
log "teardown done"
