#!/usr/bin/env bash
# The CPU replication end to end (configs/cpu-replication.yaml); see README.md beside this file.
# Every stage resumes: rerun this script after an interruption and it goes on where it stopped.
#
#   bash results/cpu-replication/run.sh [stage ...]    stages: teacher mlp cnn serve (default all)
#
# Run it in the background, niced, with its output in a file:
#   nohup nice -n 10 bash results/cpu-replication/run.sh > runs/cpu-replication.log 2>&1 &
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON=${PYTHON:-.venv/bin/python}
CONFIG=cpu-replication
RUN=runs/$CONFIG
RESULTS=results/$CONFIG
stages=("$@")
[ ${#stages[@]} -eq 0 ] && stages=(teacher mlp cnn serve)

stamp() { echo "[$(date -u +%FT%TZ)] $*"; }

for stage in "${stages[@]}"; do
  stamp "stage $stage: start"
  SECONDS=0
  case $stage in
    teacher) "$PYTHON" -m mimic_tf.teacher --config $CONFIG ;;
    mlp | cnn) "$PYTHON" -m tuner.run --family "$stage" --config $CONFIG ;;
    serve)
      "$PYTHON" -m serving.server --model-config $RUN/models.config --port 8500 --rest-port 0 &
      server=$!
      trap 'kill -TERM $server 2>/dev/null || true' EXIT
      "$PYTHON" -m serving.compare --target 127.0.0.1:8500 --models all --data auto \
        --model-config $RUN/models.config --out $RESULTS
      kill -TERM $server
      wait $server
      trap - EXIT
      ;;
    *) echo "unknown stage '$stage'; stages: teacher mlp cnn serve" >&2; exit 2 ;;
  esac
  stamp "stage $stage: done in ${SECONDS}s"
done
