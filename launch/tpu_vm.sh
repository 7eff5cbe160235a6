#!/usr/bin/env bash
# Trains glm_jax on Cloud TPU VMs: one queued resource holding one slice, or several slices over DCN.
#
#   launch/tpu_vm.sh COMMAND --name NAME --project PROJECT --zone ZONE [options] [-- train flags]
#
# Commands:
#   create   request the slice(s) as a queued resource and wait until it is ACTIVE
#   setup    put this repository at --revision on every worker (git archive + scp), then install
#            Python 3.11, requirements.txt and jax[tpu] into ~/glm_venv
#   train    start `python -m glm_jax.train` on every worker at once, in the background
#            (log: ~/glm_train.log on each worker)
#   logs     follow worker 0's log
#   supervise  keep the run going until it finishes (see below); run it where it can stay up
#   stop     stop the training processes on every worker (SIGTERM: they save a checkpoint first;
#            stop supervise first, or it starts them again)
#   delete   delete the queued resource and its slices
#   all      create, setup, train, then follow the log
#
# Options:
#   --accelerator TYPE      v4-N, v5p-N (TensorCores), v5litepod-N or v6e-N (chips)   [all but logs, delete]
#   --slices N              slices over DCN (Multislice; default 1)
#   --runtime-version V     TPU software version (default: the one Cloud TPU docs give for the type)
#   --provisioning MODEL    on-demand (default), spot or reserved
#   --revision REV          git revision the workers get (default HEAD)
#   --config FILE           glm_jax config, e.g. configs/glm_large.py                  [train, all]
#   --workdir gs://B/PATH   checkpoints, summaries, metrics.jsonl                        [train, all]
#   --delete-on-failure     delete the slice when setup or train fails (a failed create always does)
#   --poll SECONDS          supervise: how often to look (default 60)
#   --dry-run               print every command, run none
#   -- FLAGS...             more flags for glm_jax.train, e.g. -- --config.mesh.fsdp=8
#
# Every command is printed ("+ gcloud ...") before it runs. If a step fails after the slice was
# requested, the script says what exists and how to delete it (and deletes it itself while it is
# still being created, or with --delete-on-failure).
#
# supervise asks every --poll seconds for the queued resource's state and worker 0's training:
# - processes stopped by a signal after saving (exit status 75: SIGTERM of a maintenance event, or
#   `stop`), or gone without a status (VMs restarted): `train` again, which resumes from the
#   workdir's latest checkpoint;
# - the queued resource SUSPENDED or FAILED (spot capacity taken back, a slice lost): delete it,
#   then create, setup and train again, resuming the same way;
# - training finished (status 0): done. Any other status (a crash, a divergence, bad input) is
#   reported and not restarted, so a failing run does not loop.
# What it cannot do: it runs on this machine, so it stops when this machine or its shell does; it
# cannot get capacity that Cloud TPU does not give (a re-created spot or queued resource may wait
# for a long time); and a slice killed without warning loses the steps since its last checkpoint.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=launch/common.sh
source launch/common.sh

PYTHON=python3.11 # requirements.txt is pinned for 3.11; Ubuntu 22.04 runtimes ship 3.10
# shellcheck disable=SC2088 # expanded on the workers
LOG='~/glm_train.log' PID='~/glm_train.pid' STATUS='~/glm_train.status'

COMMAND=${1:-}
case $COMMAND in
  create | setup | train | logs | supervise | stop | delete | all) shift ;;
  -h | --help) usage 0 ;;
  "") usage 2 ;;
  *) die "unknown command '$COMMAND' (create, setup, train, logs, supervise, stop, delete or all)" ;;
esac

NAME="" PROJECT="" ZONE="" ACCELERATOR="" SLICES=1 RUNTIME="" PROVISIONING=on-demand
REVISION=HEAD CONFIG="" WORKDIR="" DELETE_ON_FAILURE=0 POLL=60
option() {
  case $1 in
    --name) NAME=$2 ;;
    --project) PROJECT=$2 ;;
    --zone) ZONE=$2 ;;
    --accelerator) ACCELERATOR=$2 ;;
    --slices) SLICES=$2 ;;
    --runtime-version) RUNTIME=$2 ;;
    --provisioning) PROVISIONING=$2 ;;
    --revision) REVISION=$2 ;;
    --config) CONFIG=$2 ;;
    --workdir) WORKDIR=$2 ;;
    --poll) POLL=$2 ;;
    *) die "unknown option $1" ;;
  esac
}
SWITCHES=(--delete-on-failure=DELETE_ON_FAILURE)
parse_options "$@"

# Validation: everything is checked before the first command runs.
require "queued resource and node name" "$NAME" --name
require "Google Cloud project" "$PROJECT" --project
require "zone" "$ZONE" --zone
check_name "$NAME" --name
[[ $SLICES =~ ^[1-9][0-9]*$ ]] || die "--slices '$SLICES' must be a positive integer"
[[ $POLL =~ ^[0-9]+$ ]] || die "--poll '$POLL' must be a number of seconds"
case $PROVISIONING in on-demand | spot | reserved) ;; *) die "--provisioning '$PROVISIONING' must be on-demand, spot or reserved" ;; esac
if [[ $COMMAND != logs && $COMMAND != delete ]]; then
  require "TPU accelerator type" "$ACCELERATOR" --accelerator
  tpu_shape "$ACCELERATOR"
  RUNTIME=${RUNTIME:-$TPU_RUNTIME}
  WORKERS=$((TPU_HOSTS * SLICES))
fi
if [[ $COMMAND == setup || $COMMAND == all || $COMMAND == supervise ]]; then
  git rev-parse --verify --quiet "$REVISION^{commit}" >/dev/null || die "--revision '$REVISION' is not a commit of this repository"
fi
if [[ $COMMAND == train || $COMMAND == all || $COMMAND == supervise ]]; then
  require "glm_jax config file" "$CONFIG" --config
  require "gs:// workdir" "$WORKDIR" --workdir
  check_gcs_workdir "$WORKDIR"
  check_config "$CONFIG" "$REVISION"
fi

QR=(gcloud compute tpus queued-resources)
WHERE=(--project="$PROJECT" --zone="$ZONE")
DELETE=("${QR[@]}" delete "$NAME" "${WHERE[@]}" --force --quiet)

# Failure after the slice was requested: say what exists and how to delete it; delete it when it
# was still being created (or with --delete-on-failure).
SLICE_MAY_EXIST=0 STAGE=""
on_exit() {
  local status=$?
  ((status != 0 && SLICE_MAY_EXIST)) || return 0
  echo "error: '$STAGE' failed; queued resource $NAME ($SLICES x ${ACCELERATOR:-TPU}) may exist and is billed while it does." >&2
  if [[ $STAGE == create || $DELETE_ON_FAILURE == 1 ]]; then
    echo "deleting it:" >&2
    run "${DELETE[@]}" >&2 || echo "error: delete failed; delete it yourself: $(quote_all "${DELETE[@]}")" >&2
  else
    echo "fix the cause and run 'launch/tpu_vm.sh $STAGE ...' again, or delete it: $(quote_all "${DELETE[@]}")" >&2
  fi
}
trap on_exit EXIT

# ssh_all COMMAND: runs a shell command on every worker of every slice at the same time.
ssh_all() {
  run "${QR[@]}" ssh "$NAME" "${WHERE[@]}" --node=all --worker=all --batch-size="$WORKERS" --command="$1"
}

create() {
  STAGE=create
  local nodes=(--node-id="$NAME") model=()
  if ((SLICES > 1)); then nodes=(--node-count="$SLICES" --node-prefix="$NAME"); fi
  case $PROVISIONING in spot) model=(--spot) ;; reserved) model=(--reserved) ;; esac
  echo "# $NAME: $SLICES x $ACCELERATOR ($TPU_HOSTS VMs per slice, $WORKERS workers), runtime $RUNTIME, $PROVISIONING"
  SLICE_MAY_EXIST=1
  run "${QR[@]}" create "$NAME" "${WHERE[@]}" --accelerator-type="$ACCELERATOR" --runtime-version="$RUNTIME" \
    "${nodes[@]}" "${model[@]}"
  local describe=("${QR[@]}" describe "$NAME" "${WHERE[@]}" --format='value(state.state)')
  echo "# waiting until $NAME is ACTIVE, asking every 30 s:"
  echo "+ $(quote_all "${describe[@]}")"
  [[ $DRY_RUN == 0 ]] || return 0
  local state
  while state=$("${describe[@]}"); [[ $state != ACTIVE ]]; do
    case $state in FAILED | SUSPENDED) die "queued resource $NAME is $state" ;; esac
    echo "  $NAME is $state; waiting"
    sleep 30
  done
}

setup() {
  STAGE=setup SLICE_MAY_EXIST=1
  local tarball=/tmp/glm_jax-$NAME.tar.gz
  run git archive --format=tar.gz --output="$tarball" "$REVISION"
  run "${QR[@]}" scp "$tarball" "$NAME:glm_jax.tar.gz" "${WHERE[@]}" --node=all --worker=all --batch-size="$WORKERS"
  ssh_all "set -e; rm -rf ~/glm_jax; mkdir ~/glm_jax; tar -xzf ~/glm_jax.tar.gz -C ~/glm_jax; \
command -v $PYTHON >/dev/null || { sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $PYTHON $PYTHON-venv; }; \
$PYTHON -m venv ~/glm_venv; ~/glm_venv/bin/pip install -q --upgrade pip; \
~/glm_venv/bin/pip install -q -r ~/glm_jax/requirements.txt \"jax[tpu]==$JAX_VERSION\""
}

train() {
  STAGE=train SLICE_MAY_EXIST=1
  # GLM_DISTRIBUTED_AUTO=1: glm_jax calls jax.distributed.initialize(), which reads the slice (and
  # Multislice) layout from the TPU VM metadata. The wrapper keeps the exit status for supervise.
  local flags inner
  flags=$(quote_all --config="$CONFIG" --workdir="$WORKDIR" "${TRAIN_FLAGS[@]}")
  # shellcheck disable=SC2088 # expanded by the workers' shell
  inner="~/glm_venv/bin/python -m glm_jax.train $flags; echo \$? >$STATUS"
  ssh_all "if [ -f $PID ] && kill -0 \$(cat $PID) 2>/dev/null; then echo \"glm_jax.train is already running\" >&2; exit 1; fi; \
rm -f $STATUS; cd ~/glm_jax && PYTHONUNBUFFERED=1 GLM_DISTRIBUTED_AUTO=1 \
setsid nohup bash -c $(quote "$inner") >$LOG 2>&1 </dev/null & echo \$! >$PID"
}

# Worker 0's training: running, gone (no process and no exit status), or its exit status.
train_status() {
  "${QR[@]}" ssh "$NAME" "${WHERE[@]}" --node=0 --worker=0 --command="if [ -f $PID ] && kill -0 \$(cat $PID) \
2>/dev/null; then echo running; elif [ -f $STATUS ]; then cat $STATUS; else echo gone; fi"
}

supervise() {
  STAGE=supervise SLICE_MAY_EXIST=1
  local describe=("${QR[@]}" describe "$NAME" "${WHERE[@]}" --format='value(state.state)') state status
  echo "# supervising $NAME every $POLL s (Ctrl-C stops supervising; training goes on)"
  if [[ $DRY_RUN == 1 ]]; then
    echo "+ $(quote_all "${describe[@]}")"
    return 0
  fi
  while :; do
    state=$("${describe[@]}")
    case $state in
      ACTIVE)
        status=$(train_status)
        case $status in
          running) ;;
          0) echo "# training finished" && return 0 ;;
          75 | gone) echo "# training stopped ($status): starting it again" && train ;;
          *) die "training exited with status $status; not restarted (see: launch/tpu_vm.sh logs ...)" ;;
        esac
        ;;
      SUSPENDED | FAILED)
        echo "# $NAME is $state: deleting it and creating it again"
        run "${DELETE[@]}"
        create
        setup
        train
        ;;
      *) echo "  $NAME is $state; waiting" ;;
    esac
    sleep "$POLL"
  done
}

logs() {
  STAGE=logs SLICE_MAY_EXIST=0
  echo "# Ctrl-C stops following; training goes on. When done: $(quote_all "${DELETE[@]}")"
  run "${QR[@]}" ssh "$NAME" "${WHERE[@]}" --node=0 --worker=0 --command="tail -n 100 -F $LOG"
}

stop() {
  STAGE=stop SLICE_MAY_EXIST=1
  # SIGTERM to the training process: it saves a checkpoint of the current step and exits with 75.
  ssh_all "if [ -f $PID ]; then pkill -TERM -P \$(cat $PID) 2>/dev/null || true; fi"
}

delete() {
  STAGE=delete
  run "${DELETE[@]}"
}

case $COMMAND in
  all)
    create
    setup
    train
    logs
    ;;
  *) "$COMMAND" ;;
esac
