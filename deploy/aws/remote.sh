#!/usr/bin/env bash
# Run a command on the GPU instance (no command: a shell), e.g.
#   ./remote.sh nvidia-smi
#   ./remote.sh 'cd /opt/sporeprint && sudo docker compose logs -f train-worker'
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "$0")/common.sh"
require aws ssh

INSTANCE_ID="$(instance_id)"
[[ -n "${INSTANCE_ID}" ]] || die "no ${STACK_NAME}-gpu instance: run ./02-launch-gpu.sh"
exec ssh -i "${KEY_FILE}" -o StrictHostKeyChecking=accept-new -t "${SSH_USER}@$(instance_host "${INSTANCE_ID}")" "$@"
