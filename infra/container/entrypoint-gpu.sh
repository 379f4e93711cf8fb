#!/usr/bin/env bash
# GPU container entrypoint: tritonserver and the seqguard bento in one container, supervised together.
#
# SageMaker runs `docker run <image> serve`; /ping (the bento's /readyz) is healthy only when the bento is up AND
# Triton answers with every model READY, because the service's Triton backend is what /readyz checks. If either
# process exits, the other is stopped and the container exits non-zero, so the platform replaces it.
#
# Before either starts, the service's pre-flight (settings, the repository against its manifest, the state store's
# durability) runs once: a broken model fails the container within seconds with exit code 2 and the file named,
# rather than tritonserver and the bento being restarted in a loop.
set -Eeuo pipefail

[ "${1:-serve}" = "serve" ] || exec "$@"   # anything but `serve` runs as given (debug shells, one-off commands)

: "${SEQGUARD_REPO:=/home/bentoml/bento/src/triton_repo}"
: "${SEQGUARD_PORT:=8080}"
: "${TRITON_GRPC_PORT:=8001}"
: "${TRITON_CMD:=tritonserver --model-repository=${SEQGUARD_REPO} --http-port=8000 --grpc-port=${TRITON_GRPC_PORT} --metrics-port=8002 --exit-timeout-secs=10}"
: "${BENTO_CMD:=bentoml serve ${BENTO_PATH:-/home/bentoml/bento} --port ${SEQGUARD_PORT}}"
: "${CHECK_CMD:=python -m seqguard.service.check}"
export SEQGUARD_REPO SEQGUARD_PORT SEQGUARD_BACKEND=triton
export SEQGUARD_TRITON_URL="${SEQGUARD_TRITON_URL:-127.0.0.1:${TRITON_GRPC_PORT}}"

# shellcheck disable=SC2086
if ! (cd "${BENTO_SRC:-/home/bentoml/bento/src}" 2>/dev/null || true; $CHECK_CMD); then
  echo "entrypoint: pre-flight failed; not starting (fix the repository or settings named above)" >&2
  exit 2
fi

pids=()
stop_all() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait || true
}
trap 'stop_all; exit 143' TERM INT

# shellcheck disable=SC2086  # the commands are meant to be word-split
$TRITON_CMD &
pids+=($!)
echo "entrypoint: tritonserver pid ${pids[0]}" >&2
# shellcheck disable=SC2086
$BENTO_CMD &
pids+=($!)
echo "entrypoint: bento pid ${pids[1]}" >&2

set +e
wait -n "${pids[@]}"
code=$?
set -e
echo "entrypoint: a supervised process exited with ${code}; stopping the other" >&2
stop_all
exit $(( code == 0 ? 1 : code ))
