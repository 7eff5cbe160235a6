#!/usr/bin/env bash
# Trains glm_jax on TPU slices of a GKE cluster through xpk (which writes and applies the JobSet).
#
#   launch/gke_xpk.sh COMMAND --cluster CLUSTER --project PROJECT --zone ZONE [options] [-- train flags]
#
# Commands:
#   image    build and push the dependency image (launch/Dockerfile.tpu: requirements + jax[tpu])
#   run      xpk workload create: xpk adds this repository on top of --image and starts
#            `python -m glm_jax.train` on every host of every slice
#   delete   xpk workload delete
#
# Options:
#   --name NAME             workload name                                              [run, delete]
#   --image IMAGE           dependency image, e.g. gcr.io/PROJECT/glm-jax-deps          [image, run]
#   --accelerator TYPE      v4-N, v5p-N, v5litepod-N or v6e-N                            [run]
#   --slices N              slices over DCN (default 1)
#   --config FILE           glm_jax config                                              [run]
#   --workdir gs://B/PATH   checkpoints, summaries, metrics.jsonl                       [run]
#   --dry-run               print every command, run none
#   -- FLAGS...             more flags for glm_jax.train
#
# The cluster and its TPU node pools are made beforehand (`xpk cluster create --tpu-type TYPE
# --num-slices N ...`). On GKE the TPU environment variables tell glm_jax.training.distributed the layout.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=launch/common.sh
source launch/common.sh

COMMAND=${1:-}
case $COMMAND in
  image | run | delete) shift ;;
  -h | --help) usage 0 ;;
  "") usage 2 ;;
  *) die "unknown command '$COMMAND' (image, run or delete)" ;;
esac

CLUSTER="" PROJECT="" ZONE="" NAME="" IMAGE="" ACCELERATOR="" SLICES=1 CONFIG="" WORKDIR=""
option() {
  case $1 in
    --cluster) CLUSTER=$2 ;;
    --project) PROJECT=$2 ;;
    --zone) ZONE=$2 ;;
    --name) NAME=$2 ;;
    --image) IMAGE=$2 ;;
    --accelerator) ACCELERATOR=$2 ;;
    --slices) SLICES=$2 ;;
    --config) CONFIG=$2 ;;
    --workdir) WORKDIR=$2 ;;
    *) die "unknown option $1" ;;
  esac
}
parse_options "$@"

require "Google Cloud project" "$PROJECT" --project
if [[ $COMMAND != image ]]; then
  require "GKE cluster" "$CLUSTER" --cluster
  require "zone" "$ZONE" --zone
  require "workload name" "$NAME" --name
  check_name "$NAME" --name
fi
if [[ $COMMAND != delete ]]; then require "dependency image" "$IMAGE" --image; fi
if [[ $COMMAND == run ]]; then
  require "TPU accelerator type" "$ACCELERATOR" --accelerator
  tpu_shape "$ACCELERATOR"
  [[ $SLICES =~ ^[1-9][0-9]*$ ]] || die "--slices '$SLICES' must be a positive integer"
  require "glm_jax config file" "$CONFIG" --config
  require "gs:// workdir" "$WORKDIR" --workdir
  check_gcs_workdir "$WORKDIR"
  check_config "$CONFIG"
fi

XPK_WHERE=(--cluster="$CLUSTER" --project="$PROJECT" --zone="$ZONE")

case $COMMAND in
  image)
    run docker build --file=launch/Dockerfile.tpu --tag="$IMAGE" .
    run docker push "$IMAGE"
    ;;
  run)
    echo "# $NAME: $SLICES x $ACCELERATOR ($TPU_HOSTS hosts per slice)"
    run xpk workload create --workload="$NAME" "${XPK_WHERE[@]}" --tpu-type="$ACCELERATOR" --num-slices="$SLICES" \
      --base-docker-image="$IMAGE" --script-dir=. \
      --command="PYTHONUNBUFFERED=1 python -m glm_jax.train $(quote_all --config="$CONFIG" --workdir="$WORKDIR" "${TRAIN_FLAGS[@]}")"
    ;;
  delete)
    run xpk workload delete --workload="$NAME" "${XPK_WHERE[@]}"
    ;;
esac
