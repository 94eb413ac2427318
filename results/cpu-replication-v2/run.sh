#!/usr/bin/env bash
# The replication campaign on a strong teacher (configs/cpu-replication-v2.yaml): start or
# resume it, niced, in the background, with its log beside the run folder:
#
#   bash results/cpu-replication-v2/run.sh start            # from the campaign's worktree
#   bash results/cpu-replication-v2/run.sh [stage ...]      # in the foreground
#   bash results/cpu-replication-v2/run.sh status           # where it stands (tuner.status)
#
# Stages: teacher mlp cnn publish (default: all, in that order). Every stage resumes where it
# stopped: finished members, the transfer set's finished views and finished trials are kept
# on disk; a finished teacher is not touched again. A search that RESULTS/results.csv holds
# finished but the run folder does not (lost with its machine) is kept as a record and not
# run again (`tuner.run --keep`, tuner/kept.py).
#   OUT      the run folder's parent, outside any checkout (default $HOME/mimic-tf-runs)
#   RESULTS  where `publish` copies the small result files (default: this script's folder)
#   PYTHON   the interpreter (default: the main checkout's .venv, see README.md here)
#   WORKERS  trials side by side in the mlp and cnn stages (default: one a core): KerasTuner's
#            chief/worker mode on loopback, each worker with one TensorFlow thread, since two
#            one-thread trials train 1.3-2.6x the images of one two-thread trial on a 2-core
#            CPU (benchmarks/parallel_trials.py, docs/performance.md); 1: one process
#   ORACLE_PORT  the chief's base port on 127.0.0.1 (default 27100; search i on base + i)
# The teacher stage trains member 1 first and goes on to the other members only when it
# reaches MEMBER_BAR (0.90) test accuracy; FORCE=1 goes on regardless.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
CONFIG=${CONFIG:-cpu-replication-v2}  # another config's name only to try the script out
OUT=${OUT:-$HOME/mimic-tf-runs}
RUN=$OUT/$CONFIG
RESULTS=${RESULTS:-$HERE}
PYTHON=${PYTHON:-$REPO/.venv/bin/python}
WORKERS=${WORKERS:-$(nproc)}
ORACLE_PORT=${ORACLE_PORT:-27100}
MEMBER_BAR=${MEMBER_BAR:-0.90}
[ -x "$PYTHON" ] || PYTHON=$(git -C "$REPO" worktree list | head -1 | cut -d' ' -f1)/.venv/bin/python
export PYTHONPATH=$REPO  # this checkout's code, whatever the venv was installed from
# The shared CIFAR-10 copy beside the main checkout (a worktree elsewhere has no ../shared).
MAIN=$(git -C "$REPO" worktree list | head -1 | cut -d' ' -f1)
[ -z "${MIMIC_TF_DATA:-}" ] && [ -f "$MAIN/../shared/data/cifar10-jpeg.tar.gz" ] &&
  export MIMIC_TF_DATA=$MAIN/../shared/data/cifar10-jpeg.tar.gz
cd "$REPO"
# The ensemble's size, from the config: the one place that knows it.
MEMBERS=$("$PYTHON" -c "import sys
from mimic_tf.config import ConfigError, load_config
try: print(load_config(sys.argv[1]).teacher.members)
except ConfigError as error: sys.exit(f'error: {error}')" "$CONFIG")

stamp() { echo "[$(date -u +%FT%TZ)] $*"; }

if [ "${1:-}" = status ]; then  # where the campaign stands, from its run folder and log
  if pgrep -f -- "--config $CONFIG" > /dev/null; then running=running; else running="not running"; fi
  echo "campaign $running; log: $OUT/$CONFIG.log (last: $(grep -v '^ ' "$OUT/$CONFIG.log" 2>/dev/null | tail -1))"
  exec "$PYTHON" -m tuner.status "$RUN" --config $CONFIG
fi

if [ "${1:-}" = start ]; then
  mkdir -p "$OUT"
  shift
  nohup nice -n 19 bash "$0" "$@" >> "$OUT/$CONFIG.log" 2>&1 &
  echo "campaign started (pid $!), commit $(git rev-parse --short HEAD); log: $OUT/$CONFIG.log"
  exit 0
fi

member_accuracy() {  # test accuracy of member 1, from teacher.json
  "$PYTHON" -c "import json,sys; print(json.load(open(sys.argv[1]))['members'][0]['test_accuracy'])" \
    "$RUN/teacher/teacher.json"
}

teacher_complete() {  # whether teacher.json records the ensemble of all $MEMBERS members
  [ -f "$RUN/teacher/teacher.json" ] && [ -f "$RUN/teacher/ensemble.keras" ] &&
    "$PYTHON" -c "import json,sys; sys.exit(json.load(open(sys.argv[1])).get('ensemble', {}).get('members') != int(sys.argv[2]))" \
      "$RUN/teacher/teacher.json" "$MEMBERS"
}

search_family() {  # one family's searches: one process, or a chief and $WORKERS workers
  local args=(-m tuner.run --family "$1" --config $CONFIG --out "$OUT")
  # Searches the committed results hold but the run folder does not (it was lost with its
  # machine) are kept as records, not run again (tuner.kept); the others are this run's.
  if [ -f "$RESULTS/results.csv" ]; then args+=(--keep "$RESULTS"); fi
  if [ "$WORKERS" -le 1 ]; then "$PYTHON" "${args[@]}"; return; fi
  # The chief builds the transfer set (an hour) and serves a search only when the last one's
  # trials have all ended: the workers wait for it as long as that takes.
  export KERASTUNER_ORACLE_IP=127.0.0.1 KERASTUNER_ORACLE_PORT=$ORACLE_PORT
  export MIMIC_TF_WORKER_WAIT=${MIMIC_TF_WORKER_WAIT:-28800}
  local workers=() i pid alive ended status=0
  for i in $(seq 1 "$WORKERS"); do
    stamp "$1: worker $i of $WORKERS, one thread, log $OUT/$CONFIG.worker$i.log"
    KERASTUNER_TUNER_ID=worker$i TF_NUM_INTRAOP_THREADS=1 TF_NUM_INTEROP_THREADS=1 \
      "$PYTHON" "${args[@]}" >> "$OUT/$CONFIG.worker$i.log" 2>&1 &
    workers+=($!)
  done
  KERASTUNER_TUNER_ID=chief "$PYTHON" "${args[@]}" &
  local chief=$!
  # A worker that fails leaves its trial running in the chief's eyes, which would then wait
  # for it forever: stop them all (every search resumes where it stopped) and fail the stage.
  while :; do
    ended= status=0
    wait -n -p ended "$chief" "${workers[@]}" || status=$?
    [ -z "$ended" ] || [ "$ended" = "$chief" ] && break
    if [ "$status" -ne 0 ]; then
      stamp "$1: worker pid $ended failed (exit $status): stopping the chief and the workers"
      kill "$chief" "${workers[@]}" 2> /dev/null || true
      wait || true
      return "$status"
    fi
    local left=()  # it ended well (its searches are over): not waited on again
    for pid in "${workers[@]}"; do [ "$pid" = "$ended" ] || left+=("$pid"); done
    workers=("${left[@]}")
  done
  # The workers end with the chief's last search; those that do not, within a minute, are
  # stopped (as they all are if the chief failed).
  [ "$status" -eq 0 ] && for i in $(seq 60); do
    alive=0; for pid in "${workers[@]}"; do kill -0 "$pid" 2> /dev/null && alive=1; done
    [ "$alive" -eq 0 ] && break; sleep 1
  done
  kill "${workers[@]}" 2> /dev/null || true
  wait || true
  return "$status"
}

stages=("$@")
[ ${#stages[@]} -eq 0 ] && stages=(teacher mlp cnn publish)
stamp "campaign: commit $(git rev-parse HEAD), python $PYTHON, stages ${stages[*]}"
for stage in "${stages[@]}"; do
  stamp "stage $stage: start"
  SECONDS=0
  case $stage in
    teacher)
      # Member 1's gate only while the ensemble is unfinished: `--members 1` on a finished
      # teacher would rebuild (and re-evaluate) a 1-member ensemble in its place.
      if teacher_complete; then
        stamp "teacher: the ensemble of $MEMBERS members is done ($RUN/teacher/teacher.json)"
        stamp "stage teacher: done in ${SECONDS}s"
        continue
      fi
      "$PYTHON" -m mimic_tf.train_teacher --config $CONFIG --out "$OUT" --members 1
      accuracy=$(member_accuracy)
      stamp "teacher member 1: test accuracy $accuracy (bar $MEMBER_BAR)"
      if [ "${FORCE:-0}" != 1 ] && ! "$PYTHON" -c "import sys; sys.exit(float(sys.argv[1]) < float(sys.argv[2]))" "$accuracy" "$MEMBER_BAR"; then
        stamp "member 1 is under the bar: find out why before training more (FORCE=1 to go on)"
        exit 3
      fi
      "$PYTHON" -m mimic_tf.train_teacher --config $CONFIG --out "$OUT" --members $MEMBERS
      ;;
    mlp | cnn) search_family "$stage" ;;
    publish)
      mkdir -p "$RESULTS"
      # Records of another run folder (one lost with its machine) are moved aside first, never
      # overwritten: the committed stages.log must begin with a line of this run's log.
      if [ -s "$RESULTS/stages.log" ] && ! grep -qxF "$(head -1 "$RESULTS/stages.log")" "$OUT/$CONFIG.log"; then
        stamp "publish: $RESULTS holds another run's records (its stages.log begins"
        stamp "  '$(head -1 "$RESULTS/stages.log")', not in $OUT/$CONFIG.log):"
        stamp "  move its teacher.json and stages.log aside (as first-teacher/) first; its"
        stamp "  results.csv and config.yaml stay, for the searches to keep (tuner.kept)"
        exit 4
      fi
      # results.md rebuilt by this checkout's report, from the searches finished so far.
      if [ -d "$RUN/searches" ] || [ -f "$RUN/kept_results.csv" ]; then
        "$PYTHON" -m tuner.report "$RUN" > /dev/null
      fi
      for file in results.csv results.md figure.png config.yaml; do
        if [ -f "$RUN/$file" ]; then cp "$RUN/$file" "$RESULTS/"; fi
      done
      if [ -f "$RUN/teacher/teacher.json" ]; then cp "$RUN/teacher/teacher.json" "$RESULTS/"; fi
      # The log's stage lines and the teacher's epoch lines (its curve), without progress bars.
      grep -h "stage \|campaign:\|teacher member" "$OUT/$CONFIG.log" > "$RESULTS/stages.log" || true
      # Mid-campaign some findings have no searches to check yet: reported, not fatal (each
      # search's best trials are tested as it ends, so results.csv has their test accuracy).
      if [ -f "$RESULTS/results.csv" ]; then
        "$PYTHON" -m tuner.findings "$RESULTS" || stamp "findings: not checked (above)"
      fi
      ;;
    *) echo "unknown stage '$stage'; stages: teacher mlp cnn publish (or start)" >&2; exit 2 ;;
  esac
  stamp "stage $stage: done in ${SECONDS}s"
done
