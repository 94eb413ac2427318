#!/usr/bin/env bash
# A rehearsal of the campaign at smoke scale: run.sh's every stage (teacher with its gate, mlp
# and cnn as a chief and two workers, CNN baselines, publish), a resume of the cnn stage, and
# a lost run folder, from a throwaway worktree of COMMIT (default HEAD) with a tiny config of
# the campaign's shape. Run it before moving the campaign's worktree to a commit that changes
# a stage it has not run yet; about 5 minutes on 2 cores, beside the campaign (niced).
#
#   bash results/cpu-replication-v2/rehearse.sh [COMMIT]
#
# Exit 0 when all of these hold, 1 (saying which) otherwise:
#   - every stage ends well;
#   - the resumed cnn stage trains no trial again;
#   - after the run folder is lost, publish refuses to overwrite the lost run's records, and
#     the rerun keeps every finished search (tuner.kept) and publishes the same results.csv
#     rows.
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
MAIN=$(git -C "$HERE" worktree list | head -1 | cut -d' ' -f1)
COMMIT=${1:-HEAD}
WORK=$(mktemp -d /tmp/mimic-tf-rehearsal.XXXXXX)
git -C "$MAIN" worktree add --detach -q "$WORK/repo" "$COMMIT" || exit 1
trap 'git -C "$MAIN" worktree remove --force "$WORK/repo"; rm -rf "$WORK"' EXIT
cat > "$WORK/repo/configs/rehearsal.yaml" <<'YAML'
name: rehearsal
seed: 0
data: {source: synthetic, validation_size: 100, synthetic_examples: 400}
teacher:
  members: 2
  conv_widths: [4, 4, 8, 8, 8, 8, 8, 8]
  fc_widths: [16, 16]
  pool_dropout: [0.0, 0.0, 0.0]
  fc_dropout: 0.0
  weight_decay: 0.0
  learning_rate: 0.05
  momentum: 0.9
  batch_size: 64
  schedule: {epochs: 2, plateau_patience: 1, cooldown: 0, stop_patience: 2}
transfer: {views: 2, batch_size: 200}
student:
  clipnorm: 10.0
  batch_size: 64
  schedule: {epochs: 1, plateau_patience: 1, cooldown: 0, stop_patience: 2}
search:
  tuner: bayesian
  trials: 2
  budgets: [3.0e4]
  mlp_depths: [1, 2]
  cnn_depths: [1, 2]
  top_k: 2
  baseline: true
  baseline_families: [cnn]
frontier: {measure: false}
YAML
export CONFIG=rehearsal OUT=$WORK/runs RESULTS=$WORK/results MEMBER_BAR=0.0
export MIMIC_TF_WORKER_WAIT=600 ORACLE_PORT=${ORACLE_PORT:-28100} PYTHON=$MAIN/.venv/bin/python
SCRIPT=$WORK/repo/results/cpu-replication-v2/run.sh
failed=0
step() {  # step NAME STAGE...: run.sh's stages, niced, logged where `run.sh start` logs
  local name=$1; shift
  mkdir -p "$OUT"
  if ! (cd "$WORK/repo" && nice -n 10 bash "$SCRIPT" "$@" >> "$OUT/$CONFIG.log" 2>&1); then
    echo "FAIL $name: run.sh $* ended badly; its log:"; grep -v '^WARNING' "$OUT/$CONFIG.log" | tail -20
    grep -h -A3 'Error' "$OUT"/rehearsal.worker*.log 2>/dev/null | tail -8
    failed=1
  else
    echo "ok   $name: run.sh ${*:-(all stages)}"
  fi
}
starts() { cat "$OUT"/rehearsal.worker*.log 2>/dev/null | grep -c ' start: '; }
check() { if eval "$2"; then echo "ok   $1"; else echo "FAIL $1"; failed=1; fi; }

step first
cp "$RESULTS/results.csv" "$WORK/results.first.csv"
before=$(starts)
step resume cnn publish
check "the resumed cnn stage trained no trial again ($before trial starts before, $(starts) after)" \
  "[ $(starts) -eq $before ]"
# The run folder lost with its machine: publish refuses to overwrite its records until they
# are moved aside (teacher.json and stages.log; results.csv and config.yaml stay, to keep).
rm -rf "$OUT"
(cd "$WORK/repo" && bash "$SCRIPT" publish > "$WORK/refused.log" 2>&1)
check "publish refuses (exit 4) while the results hold the lost run's records" "[ $? -eq 4 ]"
mkdir -p "$RESULTS/lost" && mv "$RESULTS/teacher.json" "$RESULTS/stages.log" "$RESULTS/lost/"
step lost
check "after the loss no search ran again" "[ ! -d $OUT/rehearsal/searches ]"
check "after the loss results.csv holds the same rows" \
  "diff -q <(sort $WORK/results.first.csv) <(sort $RESULTS/results.csv) > /dev/null"
"$PYTHON" -m tuner.status "$OUT/rehearsal" 2> /dev/null | sed 's/^/     /'
exit $failed
