"""Run Snakemake workflows through a real single-node SLURM cluster on localhost.

The session fixture starts the cluster with ``scripts/slurm-ci.sh start`` (root + apt needed; it
installs slurm-wlm/munge if missing). When it cannot start, the tests are skipped, unless
``PASSPRUNE_REQUIRE_SLURM=1`` is set (CI), where they fail instead. If the fixture started the
cluster, it stops it again at the end of the session (set ``PASSPRUNE_KEEP_SLURM=1`` to keep it).

Every Snakemake run uses the user profile ``slurm/`` stacked with the CI overlay
``ci/slurm-local/`` (squeue status checks, fast polling, partition ``debug``).

    pytest -m slurm tests/test_slurm.py                  # both tests (end-to-end tier)
    pytest tests/test_slurm.py -k toy                    # only the toy workflow (~20 s)
"""

from __future__ import annotations

import csv
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from conftest import e2e_workdir

REPO = Path(__file__).resolve().parents[1]
#: The pipeline test's study: pretraining, one search, one fine-tuning and the summary, each stage with its own
#: resources (tests/configs/slurm-tiny.yaml).
TINY = Path("tests") / "configs" / "slurm-tiny.yaml"
SCRIPT = REPO / "scripts" / "slurm-ci.sh"
USER_PROFILE = REPO / "slurm"
CI_PROFILE = REPO / "ci" / "slurm-local"

REQUIRE = os.environ.get("PASSPRUNE_REQUIRE_SLURM") == "1"
KEEP = os.environ.get("PASSPRUNE_KEEP_SLURM") == "1"
# Upper bounds. Snakemake ignores SIGTERM while jobs run, so the runs are killed with SIGKILL.
TOY_TIMEOUT = int(os.environ.get("PASSPRUNE_SLURM_TOY_TIMEOUT", "300"))
PIPELINE_TIMEOUT = int(os.environ.get("PASSPRUNE_SLURM_TIMEOUT", "3600"))

pytestmark = [pytest.mark.slurm, pytest.mark.e2e]


def _snakemake_exe() -> str | None:
    """The snakemake next to this interpreter (the venv's), else the one on PATH."""
    here = Path(sys.executable).parent / "snakemake"
    if here.exists():
        return str(here)
    return shutil.which("snakemake")


def _unavailable(reason: str, output: str = "") -> None:
    msg = f"local SLURM cluster unavailable: {reason}"
    if output:
        msg += "\n" + output[-6000:]
    if REQUIRE:
        pytest.fail(msg + "\n(PASSPRUNE_REQUIRE_SLURM=1, so this is a failure)", pytrace=False)
    pytest.skip(msg.splitlines()[0] + " (set PASSPRUNE_REQUIRE_SLURM=1 to make this a failure)")


def _script(cmd: str, timeout: int) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(SCRIPT), cmd],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="session")
def slurm_cluster():
    """Start (or reuse) the localhost SLURM cluster; yields the snakemake executable."""
    if os.name != "posix" or not hasattr(os, "geteuid"):
        _unavailable("needs Linux")
    if os.geteuid() != 0:
        _unavailable("scripts/slurm-ci.sh needs root (it writes /etc/slurm and starts daemons)")
    if shutil.which("sinfo") is None and shutil.which("apt-get") is None:
        _unavailable("SLURM is not installed and apt-get is not available to install it")
    snakemake = _snakemake_exe()
    if snakemake is None:
        _unavailable("snakemake is not installed (pip install -e '.[workflow]')")
    # find_spec, not import: importing the plugin runs `scontrol show config`, which blocks ~9 s
    # while slurm.conf exists but slurmctld is down.
    if importlib.util.find_spec("snakemake_executor_plugin_slurm") is None:
        _unavailable("snakemake-executor-plugin-slurm is not installed (pip install -e '.[workflow]')")

    was_running = shutil.which("sinfo") is not None and _script("status", 60).returncode == 0
    try:
        res = _script("start", 900)  # may apt-get install first
    except subprocess.TimeoutExpired as e:
        _unavailable("scripts/slurm-ci.sh start timed out", str(e.output or ""))
    if res.returncode != 0:
        _unavailable(f"scripts/slurm-ci.sh start exited with {res.returncode}", res.stdout)
    yield snakemake
    if not was_running and not KEEP:
        _script("stop", 120)


def _run_snakemake(snakemake: str, args: list[str], cwd: Path, timeout: int) -> str:
    cmd = [snakemake, *args]
    env = dict(os.environ)
    env["PATH"] = f"{Path(snakemake).parent}{os.pathsep}{env.get('PATH', '')}"
    try:
        res = subprocess.run(
            cmd,
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as e:
        queue = subprocess.run(["squeue", "-o", "%i %j %T %M %R"], capture_output=True, text=True)
        out = e.output.decode() if isinstance(e.output, bytes) else (e.output or "")
        pytest.fail(
            f"snakemake did not finish within {timeout}s (killed)\n$ {' '.join(cmd)}\n"
            f"(cwd {cwd})\n{out[-8000:]}\n--- squeue\n{queue.stdout}{queue.stderr}",
            pytrace=False,
        )
    if res.returncode != 0:
        pytest.fail(
            f"snakemake exited with {res.returncode}\n$ {' '.join(cmd)}\n(cwd {cwd})\n{res.stdout[-8000:]}",
            pytrace=False,
        )
    return res.stdout


TOY_SNAKEFILE = textwrap.dedent(
    r"""
    rule all:
        input: "out/cpu.txt", "out/gpu.txt"

    rule cpu:
        output: "out/cpu.txt"
        threads: 1
        resources: runtime=5, mem_mb=200
        shell: 'echo "job=${{SLURM_JOB_ID:?not inside a SLURM job}} host=$SLURMD_NODENAME" > {output}'

    # gpu=1 -> sbatch --gpus=1 and srun --gpus=1. The rule runs inside the srun step, which sets
    # CUDA_VISIBLE_DEVICES and SLURM_STEP_GPUS, but not SLURM_JOB_GPUS.
    rule gpu:
        output: "out/gpu.txt"
        threads: 1
        resources: runtime=5, mem_mb=200, gpu=1
        shell:
            'echo "job=${{SLURM_JOB_ID:?not inside a SLURM job}}'
            ' cuda=${{CUDA_VISIBLE_DEVICES:-}} step_gpus=${{SLURM_STEP_GPUS:-}}'
            ' job_gpus=${{SLURM_JOB_GPUS:-}}" > {output}'
    """
)


def _fields(path: Path) -> dict[str, str]:
    text = path.read_text().strip()
    return dict(kv.split("=", 1) for kv in text.split() if "=" in kv)


def test_toy_workflow_runs_through_slurm(slurm_cluster, tmp_path):
    """Test A: a two-rule workflow, one rule asking for a GPU, run via the two profiles."""
    (tmp_path / "Snakefile").write_text(TOY_SNAKEFILE)
    # Absolute profile paths: `--profile NAME` is looked up relative to the cwd.
    _run_snakemake(
        slurm_cluster,
        ["--cores", "8", "--profile", str(USER_PROFILE), "--profile", str(CI_PROFILE)],
        cwd=tmp_path,
        timeout=TOY_TIMEOUT,
    )
    cpu = _fields(tmp_path / "out" / "cpu.txt")
    gpu = _fields(tmp_path / "out" / "gpu.txt")
    assert re.fullmatch(r"\d+", cpu.get("job", "")), cpu
    assert re.fullmatch(r"\d+", gpu.get("job", "")), gpu
    assert cpu["job"] != gpu["job"], "both rules ran in the same SLURM job"
    assert gpu.get("cuda") or gpu.get("step_gpus") or gpu.get("job_gpus"), (
        f"the gpu=1 rule saw no GPU assigned by SLURM: {gpu}"
    )
    # SLURM itself knows these jobs (finished jobs stay visible for MinJobAge=300 s).
    for jobid in (cpu["job"], gpu["job"]):
        q = subprocess.run(
            ["squeue", "--states=all", "-h", "-j", jobid, "-o", "%T"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert q.stdout.strip() == "COMPLETED", (jobid, q.stdout, q.stderr)
    # The CI overlay keeps the sbatch logs of successful jobs.
    logs = list((tmp_path / ".snakemake" / "slurm_logs").glob("rule_*/*.log"))
    assert {p.parent.name for p in logs} >= {"rule_cpu", "rule_gpu"}, logs


def _minutes(limit: str) -> int:
    """squeue's time limit (``[days-][hours:]minutes:seconds``) in whole minutes."""
    days, _, clock = limit.rpartition("-")
    parts = [int(p) for p in clock.split(":")]
    while len(parts) < 3:
        parts.insert(0, 0)
    return int(days or 0) * 1440 + parts[0] * 60 + parts[1] + (parts[2] > 0)


def _granted(workdir: Path) -> dict[str, dict[str, str]]:
    """{rule: what SLURM recorded for its job} from the kept sbatch logs (``<jobid>_<task>.log``) and squeue,
    which still lists finished jobs (MinJobAge=300 s in slurm-ci.sh; no accounting daemon, so no sacct)."""
    jobs = {}
    for log in (workdir / ".snakemake" / "slurm_logs").glob("rule_*/**/*.log"):
        rule = next(p for p in log.relative_to(workdir).parts if p.startswith("rule_"))[len("rule_") :]
        jobid = re.match(r"\d+", log.name).group(0)
        q = subprocess.run(
            ["squeue", "--states=all", "-h", "-j", jobid, "-o", "%T|%C|%m|%l"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        fields = q.stdout.strip().split("|")
        assert len(fields) == 4, f"squeue does not know job {jobid} of rule {rule}: {q.stdout!r} {q.stderr!r}"
        jobs[rule] = dict(zip(("state", "cpus", "mem", "limit"), fields, strict=True))
    return jobs


def test_pipeline_runs_through_slurm(slurm_cluster, tmp_path, fmnist_root):
    """Test B: the project's workflow through SLURM on a four-job study, from the repo root: every job is its
    own SLURM job with the CPUs, memory and time limit its stage asks for, and the study comes out whole.

    Runs with cwd = repo root (so `--profile slurm` resolves to ./slurm as users type it) and
    `--directory` pointing at a scratch working directory, where results/ is written.
    Set PASSPRUNE_SLURM_WORKDIR to use a fixed working directory instead (e.g. to reuse data/).
    """
    cfg = yaml.safe_load((REPO / TINY).read_text())
    fixed = os.environ.get("PASSPRUNE_SLURM_WORKDIR")
    if fixed:
        workdir = Path(fixed).resolve()
        workdir.mkdir(parents=True, exist_ok=True)
    else:
        workdir = e2e_workdir(tmp_path, fmnist_root)
    summary = Path("results") / cfg["study"] / "summary.csv"
    _run_snakemake(
        slurm_cluster,
        [
            "--cores",
            "8",
            "--profile",
            "slurm",
            "--profile",
            "ci/slurm-local",
            "--configfile",
            str(TINY),
            "--directory",
            str(workdir),
            "--",
            str(summary),
        ],
        cwd=REPO,
        timeout=PIPELINE_TIMEOUT,
    )
    granted = _granted(workdir)  # first: squeue forgets finished jobs after MinJobAge
    with (workdir / summary).open(newline="") as f:
        rows = list(csv.DictReader(f))
    # The same study in kind as a local run (tests/test_workflow.py): one row per configured run, and every
    # pruned network meets its MACs target.
    from test_workflow import _key, expected_runs

    assert {_key(r) for r in rows} == expected_runs(cfg)
    for r in rows:
        if r["method"] != "dense":
            assert 0.99 * float(r["target"]) <= float(r["macs_ratio"]) <= float(r["target"]) + 1e-9, r
    # Every job went through SLURM (the CI overlay keeps every job's sbatch log) and got what its stage asks for.
    assert set(granted) == {"pretrain", "search", "finetune", "aggregate"}, granted
    assert all(job["state"] == "COMPLETED" for job in granted.values()), granted
    for stage in ("pretrain", "search", "finetune"):
        want = cfg["resources"][stage]
        job = granted[stage]
        got = (int(job["cpus"]), job["mem"], _minutes(job["limit"]))
        assert got == (want["threads"], f"{want['mem_mb']}M", want["runtime"]), (stage, job)
