#!/usr/bin/env bash
# The CPU replication end to end (configs/cpu-replication.yaml); see README.md beside this file.
# Every stage resumes: rerun this script after an interruption and it goes on where it stopped.
#
#   bash scripts/cpu-replication.sh [stage ...]    stages: teacher mlp cnn serve publish (default all)
#
# Run it in the background, niced, with its output in a file:
#   nohup nice -n 10 bash scripts/cpu-replication.sh > runs/cpu-replication.log 2>&1 &
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
CONFIG=${CONFIG:-cpu-replication}
RUN=runs/$CONFIG
RESULTS=${RESULTS:-results/$CONFIG}
# The best student of each of the nine architectures at the largest budget.
MODELS=${MODELS:-mlp-d1-b1M,mlp-d2-b1M,mlp-d3-b1M,mlp-d4-b1M,mlp-d5-b1M,cnn-d1-b1M,cnn-d2-b1M,cnn-d3-b1M,cnn-d4-b1M}
stages=("$@")
[ ${#stages[@]} -eq 0 ] && stages=(teacher mlp cnn serve publish)

stamp() { echo "[$(date -u +%FT%TZ)] $*"; }

for stage in "${stages[@]}"; do
  stamp "stage $stage: start"
  SECONDS=0
  case $stage in
    teacher) "$PYTHON" -m mimic_tf.train_teacher --config $CONFIG ;;
    mlp | cnn) "$PYTHON" -m tuner.run --family "$stage" --config $CONFIG ;;
    serve)
      # $MODELS served over gRPC (one intra-op thread: the lowest batch-1 latency on 2 cores)
      # and compared with the same SavedModels in process.
      "$PYTHON" -m serving.server --model-config $RUN/models/models.config --port 8500 \
        --rest-port 0 --backend embedded --tensorflow-intra-op-parallelism 1 > $RUN/server.log 2>&1 &
      server=$!
      trap 'kill -TERM $server 2>/dev/null || true' EXIT
      until grep -q "ready:" $RUN/server.log; do
        kill -0 $server || { echo "the server exited; see $RUN/server.log" >&2; exit 1; }
        sleep 2
      done
      "$PYTHON" -m serving.compare --target 127.0.0.1:8500 --models $MODELS --data auto \
        --model-config $RUN/models/models.config --out $RESULTS
      kill -TERM $server
      wait $server
      trap - EXIT
      ;;
    publish)
      # The small result files, then the five findings computed from them.
      cp $RUN/results.csv $RUN/results.md $RUN/figure.png $RUN/config.yaml $RESULTS/
      cp $RUN/teacher/teacher.json $RESULTS/teacher.json
      "$PYTHON" -m tuner.findings $RESULTS
      ;;
    *) echo "unknown stage '$stage'; stages: teacher mlp cnn serve publish" >&2; exit 2 ;;
  esac
  stamp "stage $stage: done in ${SECONDS}s"
done
