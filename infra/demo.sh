#!/usr/bin/env bash
# `make demo`: sets everything up on a fresh machine and runs memlake's main job end to end.
#
# The demo keeps its own state in ./.memlake-demo (broker data, keys, lake) and runs its
# own broker on ports 19192/19193, so that it never touches a developer's memlake.
# It leaves that broker running for a look around:
#   infra/demo.sh shell   a shell with the demo's settings (`memlake tail --from-beginning --open`)
#   infra/demo.sh down    stop the demo's broker
set -euo pipefail
cd "$(dirname "$0")/.."
venv=$(infra/bootstrap.sh)
export MEMLAKE_HOME="${MEMLAKE_DEMO_HOME:-$PWD/.memlake-demo}"
export MEMLAKE_BROKER_PORT="${MEMLAKE_DEMO_BROKER_PORT:-19192}"
export MEMLAKE_BROKER_CONTROLLER_PORT="$((MEMLAKE_BROKER_PORT + 1))"
export MEMLAKE_KAFKA_BOOTSTRAP="127.0.0.1:${MEMLAKE_BROKER_PORT}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
export PATH="$venv/bin:$PATH"
mkdir -p "$MEMLAKE_HOME"

case "${1:-run}" in
  down) exec memlake down ;;
  shell) echo "memlake demo shell (MEMLAKE_HOME=$MEMLAKE_HOME); exit to leave" >&2; exec "${SHELL:-bash}" ;;
  run) ;;
  *) echo "usage: infra/demo.sh [run|shell|down]" >&2; exit 2 ;;
esac

echo "== 0. Start Kafka (a single-node KRaft broker from Maven Central jars) and memlake's topics"
memlake up
python -m infra.demo "$MEMLAKE_HOME"
