#!/usr/bin/env bash
# Forward the four APIs of the GPU instance to this machine: http://127.0.0.1:8001 ... 8004.
# They listen on the instance's loopback only; this SSH tunnel is the way in. Ctrl-C closes it.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "$0")/common.sh"
require aws ssh

INSTANCE_ID="$(instance_id)"
[[ -n "${INSTANCE_ID}" ]] || die "no ${STACK_NAME}-gpu instance: run ./02-launch-gpu.sh"
HOST="$(instance_host "${INSTANCE_ID}")"
forwards=()
for port in 8001 8002 8003 8004; do
  forwards+=(-L "${port}:127.0.0.1:${port}")
done
log "forwarding 127.0.0.1:8001-8004 to ${HOST} (Ctrl-C to stop)"
exec ssh -i "${KEY_FILE}" -o StrictHostKeyChecking=accept-new -o ExitOnForwardFailure=yes -N "${forwards[@]}" \
  "${SSH_USER}@${HOST}"
