#!/usr/bin/env bash
# Step 2: a GPU instance that runs docker-compose.yml (APIs, workers, Redis) against the S3 bucket.
# Uploads the committed source (git archive HEAD) and the settings file (no secrets: it refuses one that has
# any) to s3://<bucket>/deploy/, creates the instance role (this bucket, and reading the stack's secrets in SSM),
# an SSH key pair, a security group (SSH from your address only) and the instance (IMDSv2 only, hop limit 2 so
# that the containers reach the role), whose user data (cloud-init.sh) installs the NVIDIA container toolkit
# and starts the stack.
# Options (environment): INSTANCE_TYPE (g5.xlarge), VOLUME_GB (200), SPOT=1 (persistent spot request that
# stops, not terminates, on interruption), SESSION_MANAGER=1 (also Session Manager), SSH_CIDR, AMI_ID.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "$0")/common.sh"
require aws git curl sed

[[ -f "${ENV_FILE}" ]] || die "${ENV_FILE} is missing: run ./01-create-bucket.sh first"
leaks="$(secret_lines "${ENV_FILE}")"
[[ -z "${leaks}" ]] || die "${ENV_FILE} would put secrets into S3; remove these lines (secrets live in SSM):
${leaks}"
for name in "${SECRET_PARAMETERS[@]}"; do
  aws ssm get-parameter --name "${PARAMETER_PREFIX}/${name}" --query Parameter.Name --output text >/dev/null \
    || die "secret ${PARAMETER_PREFIX}/${name} is missing in SSM: run ./01-create-bucket.sh first"
done
BUCKET="$(bucket_name)"
ACCOUNT="$(account_id)"
ROLE="${STACK_NAME}-gpu"
SG_NAME="${STACK_NAME}-gpu"
KEY_NAME="${STACK_NAME}-${AWS_REGION}"
WORK="$(mktemp -d)"
trap 'rm -rf "${WORK}"' EXIT

existing="$(instance_id)"
[[ -z "${existing}" ]] || die "instance ${existing} already exists (./99-teardown.sh removes it)"

# 1. What the instance will run: the committed tree, and the settings (no secrets: checked above).
if [[ -n "$(git -C "${REPO_ROOT}" status --porcelain --untracked-files=no)" ]]; then
  log "warning: uncommitted changes are not deployed (git archive HEAD)"
fi
git -C "${REPO_ROOT}" archive --format=tar.gz -o "${WORK}/sporeprint-src.tar.gz" HEAD
aws s3 cp --only-show-errors "${WORK}/sporeprint-src.tar.gz" "s3://${BUCKET}/deploy/sporeprint-src.tar.gz"
aws s3 cp --only-show-errors "${ENV_FILE}" "s3://${BUCKET}/deploy/sporeprint.env"
log "uploaded the source bundle and settings to s3://${BUCKET}/deploy/"

# 2. The instance role, the services' only credentials (no access key anywhere): this bucket and nothing else
#    (read, write, list, tag; the deploy/ prefix read-only, so a service cannot change what the next instance
#    runs), and reading this stack's secrets in SSM (SecureStrings under the AWS-managed key aws/ssm, whose key
#    policy lets the account's principals decrypt through SSM: no KMS statement needed).
if ! aws iam get-role --role-name "${ROLE}" >/dev/null 2>&1; then
  log "creating role ${ROLE}"
  aws iam create-role --role-name "${ROLE}" --tags "Key=project,Value=${STACK_NAME}" \
    --assume-role-policy-document '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}]}' \
    >/dev/null
fi
aws iam put-role-policy --role-name "${ROLE}" --policy-name "${STACK_NAME}-bucket" --policy-document "$(cat <<JSON
{
  "Version": "2012-10-17",
  "Statement": [
    {"Sid": "Bucket", "Effect": "Allow", "Action": ["s3:ListBucket", "s3:GetBucketLocation"],
     "Resource": "arn:aws:s3:::${BUCKET}"},
    {"Sid": "Objects", "Effect": "Allow",
     "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload",
                "s3:GetObjectTagging", "s3:PutObjectTagging"],
     "Resource": "arn:aws:s3:::${BUCKET}/*"},
    {"Sid": "DeployBundleReadOnly", "Effect": "Deny", "Action": ["s3:PutObject", "s3:DeleteObject"],
     "Resource": "arn:aws:s3:::${BUCKET}/deploy/*"}
  ]
}
JSON
)"
aws iam put-role-policy --role-name "${ROLE}" --policy-name "${STACK_NAME}-secrets" --policy-document "$(cat <<JSON
{
  "Version": "2012-10-17",
  "Statement": [
    {"Sid": "StackSecrets", "Effect": "Allow", "Action": ["ssm:GetParameter", "ssm:GetParameters"],
     "Resource": "arn:aws:ssm:${AWS_REGION}:${ACCOUNT}:parameter${PARAMETER_PREFIX}/*"}
  ]
}
JSON
)"
# Session Manager only when asked: its managed policy may read every SSM parameter in the account, and the
# containers share the role.
if [[ "${SESSION_MANAGER:-0}" == 1 ]]; then
  aws iam attach-role-policy --role-name "${ROLE}" --policy-arn arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore
fi
if ! aws iam get-instance-profile --instance-profile-name "${ROLE}" >/dev/null 2>&1; then
  aws iam create-instance-profile --instance-profile-name "${ROLE}" >/dev/null
  aws iam add-role-to-instance-profile --instance-profile-name "${ROLE}" --role-name "${ROLE}"
  log "waiting for the new instance profile to propagate"
  sleep 15
fi

# 3. SSH key pair (private key kept in KEY_FILE).
if ! aws ec2 describe-key-pairs --key-names "${KEY_NAME}" >/dev/null 2>&1; then
  mkdir -p "$(dirname "${KEY_FILE}")"
  (umask 077 && aws ec2 create-key-pair --key-name "${KEY_NAME}" --key-type ed25519 \
    --tag-specifications "ResourceType=key-pair,Tags=[{Key=project,Value=${STACK_NAME}}]" \
    --query KeyMaterial --output text > "${KEY_FILE}")
  log "saved the SSH key to ${KEY_FILE}"
fi
[[ -f "${KEY_FILE}" ]] || die "key pair ${KEY_NAME} exists but ${KEY_FILE} does not: delete the key pair or set KEY_FILE"

# 4. Security group in the default VPC: SSH from this machine's public address only. The APIs stay on the
#    instance's loopback and are reached through the SSH tunnel (tunnel.sh).
VPC_ID="$(aws ec2 describe-vpcs --filters Name=is-default,Values=true --query 'Vpcs[0].VpcId' --output text)"
[[ "${VPC_ID}" != "None" ]] || die "no default VPC in ${AWS_REGION}: create one (aws ec2 create-default-vpc)"
SG_ID="$(aws ec2 describe-security-groups --filters "Name=group-name,Values=${SG_NAME}" "Name=vpc-id,Values=${VPC_ID}" \
  --query 'SecurityGroups[0].GroupId' --output text)"
if [[ "${SG_ID}" == "None" ]]; then
  SG_ID="$(aws ec2 create-security-group --group-name "${SG_NAME}" --vpc-id "${VPC_ID}" \
    --description "sporeprint GPU instance: SSH only" --query GroupId --output text)"
fi
SSH_CIDR="${SSH_CIDR:-$(curl -fsS https://checkip.amazonaws.com | tr -d '[:space:]')/32}"
aws ec2 authorize-security-group-ingress --group-id "${SG_ID}" --protocol tcp --port 22 --cidr "${SSH_CIDR}" \
  >/dev/null 2>&1 || log "SSH from ${SSH_CIDR} was already allowed"

# 5. The instance.
AMI_ID="${AMI_ID:-$(aws ssm get-parameter --name "${AMI_PARAMETER}" --query Parameter.Value --output text)}"
sed -e "s|@BUCKET@|${BUCKET}|g" -e "s|@REGION@|${AWS_REGION}|g" -e "s|@PARAMETER_PREFIX@|${PARAMETER_PREFIX}|g" \
  "${HERE}/cloud-init.sh" > "${WORK}/user-data.sh"
# Spot: a persistent request whose instance is stopped, not terminated, on an interruption. Its disk (Redis with
# the job records, the work dir, the built images) stays, and the request starts it again when capacity returns;
# you may also stop and start it yourself (not allowed for one-time spot). 99-teardown.sh cancels the request.
market=()
tags=("ResourceType=instance,Tags=[{Key=Name,Value=${STACK_NAME}-gpu},{Key=project,Value=${STACK_NAME}}]"
  "ResourceType=volume,Tags=[{Key=project,Value=${STACK_NAME}}]")
if [[ "${SPOT:-0}" == 1 ]]; then
  market=(--instance-market-options
    'MarketType=spot,SpotOptions={SpotInstanceType=persistent,InstanceInterruptionBehavior=stop}')
  tags+=("ResourceType=spot-instances-request,Tags=[{Key=project,Value=${STACK_NAME}}]")
fi
log "launching ${INSTANCE_TYPE} from ${AMI_ID}"
launch() {
  aws ec2 run-instances \
    --image-id "${AMI_ID}" \
    --instance-type "${INSTANCE_TYPE}" \
    --key-name "${KEY_NAME}" \
    --security-group-ids "${SG_ID}" \
    --iam-instance-profile "Name=${ROLE}" \
    --user-data "file://${WORK}/user-data.sh" \
    --metadata-options HttpTokens=required,HttpPutResponseHopLimit=2,HttpEndpoint=enabled \
    --block-device-mappings "[{\"DeviceName\":\"/dev/sda1\",\"Ebs\":{\"VolumeSize\":${VOLUME_GB},\"VolumeType\":\"gp3\",\"DeleteOnTermination\":true}}]" \
    --tag-specifications "${tags[@]}" \
    ${market[@]+"${market[@]}"} \
    --query 'Instances[0].InstanceId' --output text
}
# A new instance profile takes a while to become usable by EC2: retry only that error.
for attempt in 1 2 3 4 5 6; do
  if INSTANCE_ID="$(launch 2>"${WORK}/launch.err")"; then
    break
  fi
  if grep -qi 'instance profile' "${WORK}/launch.err" && [[ "${attempt}" -lt 6 ]]; then
    log "the instance profile is not visible to EC2 yet; retrying in 10 s"
    sleep 10
  else
    cat "${WORK}/launch.err" >&2
    die "run-instances failed"
  fi
done
aws ec2 wait instance-running --instance-ids "${INSTANCE_ID}"
HOST="$(instance_host "${INSTANCE_ID}")"
log "instance ${INSTANCE_ID} is running at ${HOST}"
cat <<NEXT
Next:
  ./remote.sh 'tail -f /var/log/sporeprint-bootstrap.log'   # until "done: the stack is up" (10-20 min)
  ./tunnel.sh                                               # then the APIs are on http://127.0.0.1:8001-8004
The API token: aws ssm get-parameter --name ${PARAMETER_PREFIX}/api-token --with-decryption --query Parameter.Value --output text
NEXT
