# Helpers shared by the launch scripts (sourced, not run): errors, one `run` for every external
# command, and the shapes of Cloud TPU slices.
# shellcheck shell=bash disable=SC2034 # the variables set here are read by the scripts

DRY_RUN=0
SWITCHES=() # flags without a value, as --flag=VARIABLE (see parse_options)
JAX_VERSION=0.10.2 # the pin of requirements.txt; jax[tpu] brings the matching libtpu

die() {
  echo "error: $*" >&2
  exit 2
}

# One argument as a shell word: unchanged when safe, else in single quotes (for --flag=value, the
# value only).
quote() {
  if [[ $1 =~ ^[A-Za-z0-9_./:=,@%+-]+$ ]]; then
    printf '%s' "$1"
  elif [[ $1 =~ ^(--[A-Za-z0-9-]+=)(.*)$ ]]; then
    printf "%s'%s'" "${BASH_REMATCH[1]}" "${BASH_REMATCH[2]//\'/\'\\\'\'}"
  else
    printf "'%s'" "${1//\'/\'\\\'\'}"
  fi
}

# All arguments as one copy-pastable command line.
quote_all() {
  local out="" word
  for word in "$@"; do out+="${out:+ }$(quote "$word")"; done
  printf '%s' "$out"
}

# usage [STATUS]: prints the calling script's header comment, then exits.
usage() {
  sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
  exit "${1:-0}"
}

# parse_options ARGS...: hands each "--key value" or "--key=value" to `option KEY VALUE` (defined by
# the calling script), sets DRY_RUN for --dry-run and VAR=1 for each switch of SWITCHES
# ("--flag=VAR" words), and puts everything after "--" into TRAIN_FLAGS.
parse_options() {
  TRAIN_FLAGS=()
  local key value switch
  while (($#)); do
    case $1 in
      --dry-run) DRY_RUN=1 && shift && continue ;;
      --) shift && TRAIN_FLAGS=("$@") && return ;;
      -h | --help) usage 0 ;;
    esac
    for switch in "${SWITCHES[@]}"; do
      if [[ $1 == "${switch%%=*}" ]]; then
        printf -v "${switch#*=}" 1
        shift
        continue 2
      fi
    done
    case $1 in
      --*=*) key=${1%%=*} value=${1#*=} && shift ;;
      --*)
        (($# >= 2)) || die "$1 needs a value"
        key=$1 value=$2 && shift 2
        ;;
      *) die "unexpected argument '$1' (flags for glm_jax.train go after --)" ;;
    esac
    option "$key" "$value"
  done
}

# Prints the command ("+ cmd args"), then runs it unless --dry-run was given.
run() {
  echo "+ $(quote_all "$@")"
  if [[ $DRY_RUN == 0 ]]; then "$@"; fi
}

# require NAME VALUE FLAG: fails with "missing FLAG" when VALUE is empty.
require() {
  [[ -n $2 ]] || die "missing $3 (the $1)"
}

# tpu_shape TYPE: sets TPU_HOSTS (VMs in one slice) and TPU_RUNTIME (default runtime version).
#
# Sizes: v4-N and v5p-N count TensorCores (2 per chip, 4 chips per VM), so v4-32 is 16 chips on 4 VMs
# and v5p-128 is 64 chips on 16 VMs. v5litepod-N and v6e-N count chips: 1, 4 or 8 chips sit on one
# VM, larger slices are VMs of 4 chips each (v5litepod-256: 64 VMs). Sources: cloud.google.com/tpu/docs
# pages "TPU v5e" (VMs hold 1, 4 or 8 chips), "TPU v5p" (v5p-128 = 64 chips on 16 hosts) and the
# xpk tool's system characteristics (v5litepod-16: 4 VMs ... v5litepod-256: 64 VMs of ct5lp-hightpu-4t).
# Runtime versions: cloud.google.com/tpu/docs/runtimes ("PyTorch and JAX" table).
tpu_shape() {
  local type=$1 n=${1##*-}
  [[ $n =~ ^[0-9]+$ ]] || die "unknown accelerator type '$type' (expected e.g. v4-32, v5p-128, v5litepod-256, v6e-64)"
  case $type in
    v4-* | v5p-*)
      ((n >= 8 && n % 8 == 0)) || die "accelerator type '$type': ${type%%-*}-N counts TensorCores, N a multiple of 8"
      TPU_HOSTS=$((n / 8))
      ;;
    v5litepod-* | v6e-*)
      case $n in
        1 | 4 | 8) TPU_HOSTS=1 ;;
        16 | 32 | 64 | 128 | 256) TPU_HOSTS=$((n / 4)) ;;
        *) die "accelerator type '$type': ${type%%-*}-N counts chips, N one of 1 4 8 16 32 64 128 256" ;;
      esac
      ;;
    *) die "unknown accelerator type '$type' (expected v4-N, v5p-N, v5litepod-N or v6e-N)" ;;
  esac
  case $type in
    v4-*) TPU_RUNTIME=tpu-ubuntu2204-base ;;
    v5p-*) TPU_RUNTIME=v2-alpha-tpuv5 ;;
    v5litepod-*) TPU_RUNTIME=v2-alpha-tpuv5-lite ;;
    v6e-*) TPU_RUNTIME=v2-alpha-tpuv6e ;;
  esac
}

# check_name VALUE FLAG: a Google Cloud resource name (lowercase letters, digits, hyphens).
check_name() {
  [[ $1 =~ ^[a-z]([a-z0-9-]{0,48}[a-z0-9])?$ ]] ||
    die "$2 '$1' is not a valid name (lowercase letters, digits and hyphens, starting with a letter)"
}

# check_gcs_workdir VALUE: every host writes the same checkpoints, so the workdir is a bucket path.
check_gcs_workdir() {
  [[ $1 =~ ^gs://[a-z0-9][a-z0-9._-]*[a-z0-9](/.*)?$ ]] ||
    die "--workdir '$1' must be a gs://BUCKET/PATH (every host writes its part of the same checkpoints)"
}

# check_config PATH [REVISION]: the config file exists (and is in the revision the workers get).
# A config may carry an argument ("configs/x.py:arg"); only the file part is checked.
check_config() {
  local file=${1%%:*}
  [[ -f $file ]] || die "config file not found: $file"
  if [[ -n ${2:-} ]]; then
    git cat-file -e "$2:$file" 2>/dev/null ||
      die "config file $file is not in revision $2 (the workers get that revision: commit it first)"
  fi
}
