"""Part 5: how long it takes to plan the paper grid: ``snakemake -n --configfile config/paper.yaml``, and the same
jobs from ``passprune.study`` in-process (what ``passprune estimate`` and ``prefetch`` use).

Why: on a cluster every submission, rerun and status check starts with Snakemake's planning step, and the paper
grid is by far the largest DAG; a dry run that takes minutes makes every interaction slow. Measured as a user
runs it, from the repository root, in a fresh process each time (each run pays the imports; ``--repeats 2``
says whether the filesystem cache matters), with an empty working directory so the whole grid is planned. The
job counts are the study's (:func:`passprune.study.counts`); Snakemake's job table must agree with them, which
this part checks. Reruns on its own: ``bash bench/run.sh dryrun``, since config/paper.yaml is still being changed.
"""

from __future__ import annotations

import argparse
import re
import resource
import subprocess
import sys
import tempfile
import time

from common import REPO, Part, md_table, median, run_part

#: Plans the study in a fresh interpreter, as ``passprune estimate`` does before it costs the jobs.
STUDY_PLAN = "import sys, passprune.study as S; S.jobs(S.load(sys.argv[1]))"


def _timed(cmd: list[str]) -> tuple[float, float, subprocess.CompletedProcess]:
    """Wall s, CPU s (user + system of the child) and the finished process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.time()
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    wall = time.time() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({p.returncode}):\n{(p.stdout + p.stderr)[-3000:]}")
    return wall, cpu, p


def snakemake_dry_run(config: str) -> tuple[float, float, int]:
    """Wall s, CPU s and the total of Snakemake's job table for a dry run of the whole grid."""
    with tempfile.TemporaryDirectory(prefix="passprune-dryrun-") as tmp:
        cmd = ["snakemake", "-n", "--quiet", "rules", "--configfile", config, "-d", tmp]
        wall, cpu, p = _timed(cmd)
    m = re.search(r"^total\s+(\d+)$", p.stdout + p.stderr, re.M)
    return wall, cpu, int(m.group(1)) if m else -1


def study_plan(config: str) -> tuple[float, float]:
    wall, cpu, _ = _timed([sys.executable, "-c", STUDY_PLAN, config])
    return wall, cpu


def measure(config: str, repeats: int) -> Part:
    import passprune.study as S

    stats = S.counts(S.jobs(S.load(REPO / config)))
    total = sum(stats.values())
    runs = [snakemake_dry_run(config) for _ in range(repeats)]
    study = [study_plan(config) for _ in range(repeats)]
    if any(r[2] != total for r in runs):
        raise RuntimeError(f"snakemake planned {[r[2] for r in runs]} jobs, passprune.study {total}")
    walls, cpus = [r[0] for r in runs], [r[1] for r in runs]
    rows = [[f"run {i + 1}", f"{w:.1f}", f"{c:.1f}"] for i, (w, c) in enumerate(zip(walls, cpus))]
    rows.append(["median", f"**{median(walls):.1f}**", f"{median(cpus):.1f}"])
    rows.append(
        ["`passprune.study` (median)", f"{median([s[0] for s in study]):.1f}", f"{median([s[1] for s in study]):.1f}"]
    )
    table = md_table(["`snakemake -n --configfile " + config + "`", "wall s", "CPU s"], rows)
    per_rule = ", ".join(f"{k} {v}" for k, v in stats.items())
    notes = [
        f"Jobs planned: **{total}** ({per_rule}); Snakemake's job table and `passprune.study.jobs` agree.",
        "Both plan the whole grid (an empty working directory); the last row plans the same jobs in-process "
        "(`passprune.study`, what `passprune estimate` and `prefetch` use), in a fresh interpreter.",
        f"{repeats} runs in a row, each a fresh process; CPU s is the process's user + system time.",
    ]
    figures = {"wall": walls, "cpu": cpus, "jobs": total, "per_rule": stats}
    figures.update(study_wall=[s[0] for s in study], study_cpu=[s[1] for s in study])
    return Part(
        "dryrun",
        f"5. Dry-run time of the paper grid ({config})",
        "none set in the issue (a figure to report)",
        None,
        table,
        notes,
        figures,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--configfile", default="config/paper.yaml")
    ap.add_argument("--repeats", type=int, default=1)
    a = ap.parse_args()
    run_part("dryrun", lambda: measure(a.configfile, a.repeats))


if __name__ == "__main__":
    main()
