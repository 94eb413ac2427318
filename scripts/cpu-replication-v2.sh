#!/usr/bin/env bash
# The replication campaign on a strong teacher (configs/cpu-replication-v2.yaml) as units of
# work that are committed on main as each one ends (tuner/campaign/): teacher members, each
# published as float16 logits into teacher/ here, then each search, its rows into results.csv
# here. A new machine starts from main alone and does only the units main does not hold.
#
#   bash scripts/cpu-replication-v2.sh start     # set up what is missing, then run niced
#                                                    # in the background, log in $OUT
#   bash scripts/cpu-replication-v2.sh status    # units done of how many, and the log
#   bash scripts/cpu-replication-v2.sh run       # the same as start, in the foreground
#
# `start` makes what a new machine lacks: the main checkout's .venv (pip install -e .[dev]),
# and the campaign's own worktree at COMMIT (default: main's HEAD; an existing worktree stays
# at its commit unless COMMIT is given), so that work on main never changes the code under a
# running unit. The units commit their files into the main checkout, and only those files.
#   OUT          the run folder's parent: scratch (default $HOME/mimic-tf-runs)
#   WORKTREE     the campaign's code (default $HOME/mimic-tf-campaign)
#   COMMIT       move the worktree to this commit on purpose (recorded in units.csv)
#   WORKERS      trials side by side in a search, one TensorFlow thread each (default: one a
#                core; benchmarks/parallel_trials.py measured 1.3-2.6x one two-thread trial)
#   ORACLE_PORT  the chiefs' base port on 127.0.0.1 (default 27100)
#   MEMBER_BAR   member 1's test accuracy below which the campaign stops (default 0.90)
#   UNITS        at most this many units, then stop (default: all)
#   MAX_UNIT_HOURS  the longest unit (default 2.0 hours). The units are measured on this machine
#                (benchmarks/campaign_plan.py --workers WORKERS, into $OUT/<config>.plan.json)
#                before a teacher member it has not begun, and where no plan of this CPU is
#                there. A member over it does not start: give the remaining members fewer
#                epochs (teacher.member_epochs). A search over it runs in parts of whole
#                rounds of trials, each committed (tuner.campaign --plan). 0: no check
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
MAIN=$(git -C "$HERE" worktree list | head -1 | cut -d' ' -f1)
CONFIG=cpu-replication-v2
RESULTS=$MAIN/results/$CONFIG
OUT=${OUT:-$HOME/mimic-tf-runs}
WORKTREE=${WORKTREE:-$HOME/mimic-tf-campaign}
PYTHON=$MAIN/.venv/bin/python
WORKERS=${WORKERS:-$(nproc)}
LOG=$OUT/$CONFIG.log
PLAN=$OUT/$CONFIG.plan.json  # benchmarks/campaign_plan.py's output on this machine
mkdir -p "$OUT"
stamp() { echo "[$(date -u +%FT%TZ)] $*" | tee -a "$LOG"; }

case "${1:-}" in
  status)
    if pgrep -f -- "tuner.campaign run --config $CONFIG" > /dev/null; then
      running=running; else running="not running"; fi
    echo "campaign $running; log: $LOG (last: $(grep -v '^ \|WARNING' "$LOG" 2>/dev/null | tail -1))"
    plan=(); [ -f "$PLAN" ] && plan=(--plan "$PLAN")  # and the hours left by it
    cd "$MAIN" && exec "$PYTHON" -m tuner.campaign status --config $CONFIG --results "$RESULTS" "${plan[@]}" ;;
  start | run) ;;
  *) echo "usage: scripts/cpu-replication-v2.sh start | status | run" >&2; exit 2 ;;
esac

# A running campaign keeps its code: COMMIT moves the worktree only between runs.
if pgrep -f -- "tuner.campaign run --config $CONFIG" > /dev/null; then
  echo "the campaign is running already (scripts/cpu-replication-v2.sh status)"; exit 0
fi
# A new machine: the virtual environment, from the main checkout's pyproject.toml.
if [ ! -x "$PYTHON" ]; then
  stamp "making $MAIN/.venv (pip install -e .[dev])"
  python3 -m venv "$MAIN/.venv"
  "$MAIN/.venv/bin/pip" install --quiet -e "$MAIN[dev]"
fi
# The campaign's worktree: made where missing; where the checkout was laid anew but the
# folder survived, its .git points into a .git/worktrees/ that is gone: moved aside.
if [ -e "$WORKTREE" ] && ! git -C "$WORKTREE" rev-parse HEAD > /dev/null 2>&1; then
  stamp "$WORKTREE is no worktree of this checkout: moved to $WORKTREE.stale.$$"
  mv "$WORKTREE" "$WORKTREE.stale.$$"
fi
git -C "$MAIN" worktree prune
if [ ! -e "$WORKTREE" ]; then
  git -C "$MAIN" worktree add --detach -q "$WORKTREE" "${COMMIT:-HEAD}"
elif [ -n "${COMMIT:-}" ]; then
  git -C "$WORKTREE" checkout --detach -q "$COMMIT"
fi
# The shared CIFAR-10 copy beside the main checkout (a worktree elsewhere has no ../shared).
if [ -z "${MIMIC_TF_DATA:-}" ] && [ -f "$MAIN/../shared/data/cifar10-jpeg.tar.gz" ]; then
  export MIMIC_TF_DATA=$MAIN/../shared/data/cifar10-jpeg.tar.gz
fi
# Each unit must end inside one stretch of work: measured here before it starts.
next=$(cd "$MAIN" && "$PYTHON" -m tuner.campaign next --config $CONFIG --results "$RESULTS")
if [ -z "$next" ]; then echo "every unit of the campaign is done (scripts/cpu-replication-v2.sh status)"; exit 0; fi
trained=  # the member's weights, where this machine trained it already (then only its logits)
started=  # its epoch backup, where this machine began training it (then it resumes, not restarts)
if [[ "$next" == member* ]]; then
  stem=$OUT/$CONFIG/teacher/member_$(printf %02d $(( ${next#member } - 1 )))
  trained=$stem.keras
  started=$OUT/$CONFIG/teacher/.backup_$(basename "$stem").npz
fi
# The plan on this machine (benchmarks/campaign_plan.py, about 4 minutes): each member unit's
# and each search unit's hours, the students timed as WORKERS one-thread trials side by side.
# Measured before a member this machine has not begun, and where no plan of this CPU is here.
# A baseline is timed at its cell's committed best widths (--results), where the worktree's
# plan knows how.
measure_plan() {
  stamp "measuring the units on this machine (campaign_plan.py --workers $WORKERS) before $next"
  local pinned=()
  grep -q -- '"--results"' "$WORKTREE/benchmarks/campaign_plan.py" && pinned=(--results "$RESULTS")
  (cd "$WORKTREE" && PYTHONPATH=$WORKTREE "$PYTHON" benchmarks/campaign_plan.py \
     --config $CONFIG --workers "$WORKERS" --steps 10 "${pinned[@]}" 2> /dev/null) > "$PLAN.tmp"
  mv "$PLAN.tmp" "$PLAN"
  grep "^a \(member\|search\)" "$PLAN" | tee -a "$LOG"
}
plan_cpu() { "$PYTHON" -c "import json,sys; print(json.loads(open(sys.argv[1]).read().splitlines()[-1])['runtime']['cpu'])" "$PLAN" 2> /dev/null; }
this_cpu=$(cd "$MAIN" && "$PYTHON" -c "from mimic_tf.runtime import cpu_name; print(cpu_name())")
if [ -n "$started" ] && [ -f "$started" ] && [ ! -f "$trained" ]; then
  stamp "$next: resuming its training from the last epoch this machine finished ($started)"
  if [ "${MAX_UNIT_HOURS:-2.0}" != 0 ] && [ "$(plan_cpu)" != "$this_cpu" ]; then measure_plan; fi
elif [ -n "$trained" ] && [ ! -f "$trained" ] && [ "${MAX_UNIT_HOURS:-2.0}" != 0 ]; then
  measure_plan
  hours=$("$PYTHON" -c "import json,sys; print(json.loads(open(sys.argv[1]).read().splitlines()[-1])['member_unit_hours'][int(sys.argv[2]) - 1])" \
          "$PLAN" "${next#member }")
  stamp "$next: about $(printf %.2f "$hours") h here (plan: $PLAN)"
  if "$PYTHON" -c "import sys; sys.exit(float(sys.argv[1]) <= float(sys.argv[2]))" "$hours" "${MAX_UNIT_HOURS:-2.0}"; then
    stamp "$next would take over ${MAX_UNIT_HOURS:-2.0} h here: give the remaining members fewer"
    stamp "epochs (teacher.member_epochs in configs/$CONFIG.yaml) and start again"
    exit 5
  fi
elif [ "${MAX_UNIT_HOURS:-2.0}" != 0 ] && [ "$(plan_cpu)" != "$this_cpu" ]; then
  measure_plan
fi
command=("$PYTHON" -m tuner.campaign run --config $CONFIG --results "$RESULTS" --out "$OUT"
         --commit --workers "$WORKERS" --oracle-port "${ORACLE_PORT:-27100}"
         --member-bar "${MEMBER_BAR:-0.90}")
if [ "${MAX_UNIT_HOURS:-2.0}" != 0 ] && [ -f "$PLAN" ]; then  # searches over it run in parts
  command+=(--plan "$PLAN" --max-unit-hours "${MAX_UNIT_HOURS:-2.0}")
fi
[ -n "${UNITS:-}" ] && command+=(--units "$UNITS")
cd "$WORKTREE"
export PYTHONPATH=$WORKTREE  # the worktree's code, whatever the venv was installed from
stamp "campaign: commit $(git rev-parse HEAD) in $WORKTREE, results $RESULTS" > /dev/null
if [ "$1" = run ]; then
  nice -n 19 "${command[@]}" 2>&1 | tee -a "$LOG"; exit "${PIPESTATUS[0]}"
fi
nohup nice -n 19 "${command[@]}" >> "$LOG" 2>&1 &
echo "campaign started (pid $!), commit $(git rev-parse --short HEAD); log: $LOG"
