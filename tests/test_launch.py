"""launch/: the exact commands of the dry-runs, fail-fast argument checks, cleanup on failure, shellcheck."""

import os
import shutil
import subprocess

import pytest
from conftest import ROOT

SCRIPTS = sorted([*ROOT.glob("launch/*.sh"), *ROOT.glob("launch/*.sbatch")])
QR = "gcloud compute tpus queued-resources"
SETUP = (
    "--command='set -e; rm -rf ~/glm_jax; mkdir ~/glm_jax; tar -xzf ~/glm_jax.tar.gz -C ~/glm_jax; "
    "command -v python3.11 >/dev/null || { sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive "
    "apt-get install -y -qq python3.11 python3.11-venv; }; python3.11 -m venv ~/glm_venv; "
    "~/glm_venv/bin/pip install -q --upgrade pip; "
    '~/glm_venv/bin/pip install -q -r ~/glm_jax/requirements.txt "jax[tpu]==0.10.2"\''
)


def _train(flags: str) -> str:
    return (
        "--command='if [ -f ~/glm_train.pid ] && kill -0 $(cat ~/glm_train.pid) 2>/dev/null; "
        'then echo "glm_jax.train is already running" >&2; exit 1; fi; '
        "rm -f ~/glm_train.status; cd ~/glm_jax && PYTHONUNBUFFERED=1 GLM_DISTRIBUTED_AUTO=1 setsid nohup bash -c "
        f"'\\''~/glm_venv/bin/python -m glm_jax.train {flags}; echo $? >~/glm_train.status'\\'' "
        ">~/glm_train.log 2>&1 </dev/null & echo $! >~/glm_train.pid'"
    )


def launch(script: str, *args: str, env: dict | None = None) -> tuple[int, list[str], str]:
    """(exit status, the printed commands without their '+ ', stderr) of one launch script."""
    result = subprocess.run(
        ["bash", str(ROOT / "launch" / script), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=60,
    )
    commands = [line[2:] for line in result.stdout.splitlines() if line.startswith("+ ")]
    return result.returncode, commands, result.stderr


def test_v4_32_all():
    where = "--project=my-project --zone=us-central2-b"
    status, commands, stderr = launch(
        "tpu_vm.sh", "all", "--dry-run", "--name=glm-v4", *where.split(), "--accelerator=v4-32",
        "--config=configs/glm_large.py", "--workdir=gs://my-bucket/glm_large",
    )  # fmt: skip
    assert status == 0, stderr
    workers = f"{where} --node=all --worker=all --batch-size=4"  # v4-32: 16 chips on 4 VMs
    assert commands == [
        f"{QR} create glm-v4 {where} --accelerator-type=v4-32 --runtime-version=tpu-ubuntu2204-base --node-id=glm-v4",
        f"{QR} describe glm-v4 {where} --format='value(state.state)'",
        "git archive --format=tar.gz --output=/tmp/glm_jax-glm-v4.tar.gz HEAD",
        f"{QR} scp /tmp/glm_jax-glm-v4.tar.gz glm-v4:glm_jax.tar.gz {workers}",
        f"{QR} ssh glm-v4 {workers} {SETUP}",
        f"{QR} ssh glm-v4 {workers} {_train('--config=configs/glm_large.py --workdir=gs://my-bucket/glm_large')}",
        f"{QR} ssh glm-v4 {where} --node=0 --worker=0 --command='tail -n 100 -F ~/glm_train.log'",
    ]


def test_v5p_128_reserved():
    where = "--project=my-project --zone=us-east5-a"
    common = ["--name=glm-v5p", *where.split(), "--accelerator=v5p-128", "--dry-run"]
    status, commands, stderr = launch("tpu_vm.sh", "create", *common, "--provisioning=reserved")
    assert status == 0, stderr
    assert commands[0] == (
        f"{QR} create glm-v5p {where} --accelerator-type=v5p-128 --runtime-version=v2-alpha-tpuv5 "
        "--node-id=glm-v5p --reserved"
    )
    status, commands, stderr = launch(
        "tpu_vm.sh", "train", *common, "--config", "configs/glm_10b.py", "--workdir", "gs://my-bucket/glm_10b",
        "--", "--config.mesh.fsdp=64", "--config.train.steps=1000",
    )  # fmt: skip
    assert status == 0, stderr
    flags = " ".join(
        [
            "--config=configs/glm_10b.py",
            "--workdir=gs://my-bucket/glm_10b",
            "--config.mesh.fsdp=64",
            "--config.train.steps=1000",
        ]
    )
    # v5p-128: 64 chips on 16 VMs, all started at once (batch size = workers)
    assert commands == [f"{QR} ssh glm-v5p {where} --node=all --worker=all --batch-size=16 {_train(flags)}"]


def test_v5e_256_two_slices_spot():
    where = "--project=my-project --zone=us-west4-a"
    common = ["--name=glm-v5e", *where.split(), "--accelerator=v5litepod-256", "--slices=2", "--dry-run"]
    status, commands, stderr = launch("tpu_vm.sh", "create", *common, "--provisioning=spot")
    assert status == 0, stderr
    assert commands[0] == (
        f"{QR} create glm-v5e {where} --accelerator-type=v5litepod-256 --runtime-version=v2-alpha-tpuv5-lite "
        "--node-count=2 --node-prefix=glm-v5e --spot"
    )
    train = ["--config=configs/glm_large.py", "--workdir=gs://my-bucket/glm_large", "--", "--config.mesh.data=-1"]
    status, commands, stderr = launch("tpu_vm.sh", "train", *common, *train)
    assert status == 0, stderr
    flags = "--config=configs/glm_large.py --workdir=gs://my-bucket/glm_large --config.mesh.data=-1"
    # 2 slices x 64 VMs of 4 chips: 128 workers over DCN, all started at once
    assert commands == [f"{QR} ssh glm-v5e {where} --node=all --worker=all --batch-size=128 {_train(flags)}"]
    status, commands, _ = launch("tpu_vm.sh", "delete", "--name=glm-v5e", *where.split(), "--dry-run")
    assert commands == [f"{QR} delete glm-v5e {where} --force --quiet"]


GOOD = ["--name=glm", "--project=p", "--zone=z", "--accelerator=v4-32"]
TRAIN = ["--config=configs/glm_tiny.py", "--workdir=gs://my-bucket/run"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", *GOOD[:3], "--accelerator=v3-8", *TRAIN], "unknown accelerator type 'v3-8'"),
        (["train", *GOOD[:3], "--accelerator=v5e-256", *TRAIN], "unknown accelerator type 'v5e-256'"),
        (["create", *GOOD[:3], "--accelerator=v4-12"], "N a multiple of 8"),
        (["create", *GOOD[:3], "--accelerator=v5litepod-12"], "N one of 1 4 8"),
        (["create", "--name=glm", "--zone=z", "--accelerator=v4-32"], "missing --project"),
        (["create", *GOOD[:3]], "missing --accelerator"),
        (["train", *GOOD, "--config=configs/glm_tiny.py"], "missing --workdir"),
        (["train", *GOOD, "--config=configs/glm_tiny.py", "--workdir=/tmp/run"], "must be a gs://BUCKET/PATH"),
        (["train", *GOOD, "--config=configs/nope.py", "--workdir=gs://my-bucket/run"], "config file not found"),
        (["all", *GOOD, *TRAIN, "--revision=no-such-revision"], "is not a commit"),
        (["create", *GOOD, "--slices=0"], "--slices '0'"),
        (["create", *GOOD, "--provisioning=cheap"], "--provisioning 'cheap'"),
        (["create", "--name=Glm_1", *GOOD[1:]], "not a valid name"),
        (["create", *GOOD, "--acelerator=v4-8"], "unknown option --acelerator"),
        (["launch", *GOOD], "unknown command 'launch'"),
    ],
)
def test_bad_arguments_fail_before_any_command(args, message):
    status, commands, stderr = launch("tpu_vm.sh", *args, "--dry-run")
    assert status == 2 and commands == []
    assert message in stderr


@pytest.fixture
def fake_gcloud(tmp_path):
    """A gcloud on PATH that records its calls: `describe` prints $FAKE_STATE, $FAKE_FAIL fails a verb."""
    (tmp_path / "gcloud").write_text(
        "#!/usr/bin/env bash\n"
        'echo "$*" >>"$FAKE_LOG"\n'
        '[[ " $* " == *" describe "* ]] && echo "${FAKE_STATE:-ACTIVE}"\n'
        '[[ -n ${FAKE_FAIL:-} && " $* " == *" $FAKE_FAIL "* ]] && exit 1\n'
        "exit 0\n"
    )
    (tmp_path / "gcloud").chmod(0o755)
    log = tmp_path / "calls"
    env = {"PATH": f"{tmp_path}:{os.environ['PATH']}", "FAKE_LOG": str(log)}
    return env, lambda: [line.split()[3] for line in log.read_text().splitlines()]  # verb of each call


def test_failed_create_deletes_the_queued_resource(fake_gcloud):
    env, verbs = fake_gcloud
    status, commands, stderr = launch("tpu_vm.sh", "create", *GOOD, env={**env, "FAKE_STATE": "FAILED"})
    assert status == 2
    assert verbs() == ["create", "describe", "delete"]
    assert "queued resource glm is FAILED" in stderr and "deleting it" in stderr


@pytest.mark.parametrize("delete_on_failure", [False, True])
def test_failed_train_says_what_exists_and_how_to_delete(fake_gcloud, delete_on_failure):
    env, verbs = fake_gcloud
    extra = ["--delete-on-failure"] if delete_on_failure else []
    status, _, stderr = launch("tpu_vm.sh", "train", *GOOD, *TRAIN, *extra, env={**env, "FAKE_FAIL": "ssh"})
    assert status == 1
    assert "queued resource glm (1 x v4-32) may exist" in stderr
    if delete_on_failure:
        assert verbs() == ["ssh", "delete"]
    else:
        assert verbs() == ["ssh"]
        assert f"delete it: {QR} delete glm --project=p --zone=z --force --quiet" in stderr


@pytest.fixture
def scripted_gcloud(tmp_path):
    """A gcloud on PATH that records its calls and answers `describe` and worker 0's status query
    with the next line of the files `states` and `statuses`."""
    (tmp_path / "gcloud").write_text(
        "#!/usr/bin/env bash\n"
        'echo "$*" >>"$FAKE_DIR/calls"\n'
        'answer() { head -n 1 "$FAKE_DIR/$1"; sed -i 1d "$FAKE_DIR/$1"; }\n'
        '[[ " $* " == *" describe "* ]] && answer states\n'
        '[[ " $* " == *" --worker=0 --command=if "* ]] && answer statuses\n'
        "exit 0\n"
    )
    (tmp_path / "gcloud").chmod(0o755)

    def verbs():
        calls = (tmp_path / "calls").read_text().splitlines()
        return [line.split()[3] + (" status" if "--worker=0 --command=if" in line else "") for line in calls]

    return {"PATH": f"{tmp_path}:{os.environ['PATH']}", "FAKE_DIR": str(tmp_path)}, tmp_path, verbs


def test_supervise_restarts_after_a_preemption_and_recreates_a_lost_slice(scripted_gcloud):
    env, answers, verbs = scripted_gcloud
    # ACTIVE and running; stopped by SIGTERM after a checkpoint (75); processes gone (VMs restarted);
    # then the spot slice is lost (SUSPENDED) and created again; finally training finishes (0).
    (answers / "states").write_text("ACTIVE\nACTIVE\nACTIVE\nSUSPENDED\nACTIVE\nACTIVE\n")
    (answers / "statuses").write_text("running\n75\ngone\n0\n")
    status, _, stderr = launch("tpu_vm.sh", "supervise", *GOOD, *TRAIN, "--poll=0", env=env)
    assert status == 0, stderr
    assert verbs() == [
        "describe", "ssh status",  # running
        "describe", "ssh status", "ssh",  # 75: train again
        "describe", "ssh status", "ssh",  # gone: train again
        "describe", "delete", "create", "describe", "scp", "ssh", "ssh",  # lost: all again
        "describe", "ssh status",  # finished
    ]  # fmt: skip


def test_supervise_does_not_restart_a_failed_run(scripted_gcloud):
    env, answers, verbs = scripted_gcloud
    (answers / "states").write_text("ACTIVE\n")
    (answers / "statuses").write_text("3\n")  # e.g. training diverged
    status, _, stderr = launch("tpu_vm.sh", "supervise", *GOOD, *TRAIN, "--poll=0", env=env)
    assert status == 2 and "training exited with status 3; not restarted" in stderr
    assert verbs() == ["describe", "ssh status"]


SLURM = {
    "SLURM_JOB_ID": "4242",
    "SLURM_JOB_NUM_NODES": "4",
    "SLURM_GPUS_ON_NODE": "8",
    "SLURM_JOB_NODELIST": "h100-[001-004]",
}


@pytest.fixture
def fake_scontrol(tmp_path):
    (tmp_path / "scontrol").write_text("#!/bin/sh\nprintf 'h100-001\\nh100-002\\nh100-003\\nh100-004\\n'\n")
    (tmp_path / "scontrol").chmod(0o755)
    return {"PATH": f"{tmp_path}:{os.environ['PATH']}"}


PER_TASK = (
    "srun --kill-on-bad-exit=1 bash -c 'export GLM_PROCESS_ID=$SLURM_PROCID "
    'JAX_LOCAL_DEVICE_IDS=${JAX_LOCAL_DEVICE_IDS:-$SLURM_LOCALID}; exec "$@"\' task '
    "python -m glm_jax.train --config=configs/glm_large.py --workdir=gs://my-bucket/run"
)


@pytest.mark.parametrize(
    "tasks, environment",
    [
        ("32", "GLM_COORDINATOR_ADDRESS=h100-001:24242 GLM_NUM_PROCESSES=32"),  # one process per GPU
        ("4", "GLM_COORDINATOR_ADDRESS=h100-001:24242 GLM_NUM_PROCESSES=4 JAX_LOCAL_DEVICE_IDS=0,1,2,3,4,5,6,7"),
    ],
)
def test_slurm_gives_jax_distributed_its_coordinator_count_and_id(fake_scontrol, tasks, environment):
    env = {**fake_scontrol, **SLURM, "SLURM_NTASKS": tasks}
    args = ["--config", "configs/glm_large.py", "--workdir", "gs://my-bucket/run", "--dry-run"]
    status, commands, stderr = launch("slurm_gpu.sbatch", *args, env=env)
    assert status == 0, stderr
    assert commands == [f"export {environment}", PER_TASK]


def test_slurm_fails_fast(fake_scontrol):
    args = ["--config=configs/glm_large.py", "--workdir=/shared/run", "--dry-run"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    result = subprocess.run(
        ["bash", "launch/slurm_gpu.sbatch", *args], cwd=ROOT, capture_output=True, text=True, env=env
    )
    assert result.returncode == 2 and "not inside a SLURM job" in result.stderr
    status, _, stderr = launch("slurm_gpu.sbatch", *args, env={**fake_scontrol, **SLURM, "SLURM_NTASKS": "8"})
    assert status == 2 and "2 tasks per node with 8 GPUs per node" in stderr
    no_gpu_count = {**fake_scontrol, **SLURM, "SLURM_NTASKS": "8", "SLURM_GPUS_ON_NODE": ""}
    status, _, stderr = launch("slurm_gpu.sbatch", *args, env=no_gpu_count)
    assert status == 2 and "cannot tell the GPUs per node" in stderr
    status, _, stderr = launch("slurm_gpu.sbatch", "--config=configs/nope.py", "--workdir=/x", "--dry-run")
    assert status == 2 and "config file not found: configs/nope.py" in stderr


def test_gke_xpk_run():
    where = "--cluster=tpu-cluster --project=my-project --zone=us-east5-b"
    status, commands, stderr = launch(
        "gke_xpk.sh", "run", "--dry-run", "--name=glm-run", *where.split(), "--image=gcr.io/my-project/glm-deps",
        "--accelerator=v5p-128", "--slices=2", "--config=configs/glm_large.py", "--workdir=gs://my-bucket/run",
    )  # fmt: skip
    assert status == 0, stderr
    assert commands == [
        f"xpk workload create --workload=glm-run {where} --tpu-type=v5p-128 --num-slices=2 "
        "--base-docker-image=gcr.io/my-project/glm-deps --script-dir=. --command='PYTHONUNBUFFERED=1 python -m "
        "glm_jax.train --config=configs/glm_large.py --workdir=gs://my-bucket/run'"
    ]
    status, commands, stderr = launch("gke_xpk.sh", "run", "--dry-run", "--name=glm-run", *where.split())
    assert status == 2 and commands == [] and "missing --image" in stderr


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed")
@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_shellcheck(script):
    result = subprocess.run(
        ["shellcheck", "-x", str(script.relative_to(ROOT))], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout
