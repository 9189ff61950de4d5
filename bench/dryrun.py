"""Part 5: how long Snakemake takes to plan the paper grid (``snakemake -n --configfile config/paper.yaml``).

Why: on a cluster every submission, rerun and status check starts with this planning step, and the paper
grid is by far the largest DAG; a dry run that takes minutes makes every interaction slow. Measured as a
user runs it, from the repository root, in a fresh process each time (each run pays the imports; ``--repeats 2`` says whether the filesystem cache matters). Reruns on its own:
``bash bench/run.sh dryrun``, since config/paper.yaml is still being changed.
"""

from __future__ import annotations

import argparse
import re
import resource
import subprocess
import time

from common import REPO, Part, md_table, median, run_part


def dry_run(config: str) -> tuple[float, float, int, dict[str, int], str]:
    """Wall s, CPU s, job count, jobs per rule, and the last lines of output on failure."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.time()
    p = subprocess.run(
        ["snakemake", "-n", "--quiet", "rules", "--configfile", config], capture_output=True, text=True, cwd=REPO
    )
    wall = time.time() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    text = p.stdout + p.stderr
    if p.returncode != 0:
        raise RuntimeError(f"snakemake -n --configfile {config} failed ({p.returncode}):\n{text[-3000:]}")
    stats = dict((m.group(1), int(m.group(2))) for m in re.finditer(r"^(\S+)\s+(\d+)$", text, re.M))
    total = stats.pop("total", sum(stats.values()))
    return wall, cpu, total, stats, text


def measure(config: str, repeats: int) -> Part:
    runs = [dry_run(config) for _ in range(repeats)]
    walls, cpus = [r[0] for r in runs], [r[1] for r in runs]
    total, stats = runs[-1][2], runs[-1][3]
    rows = [[f"run {i + 1}", f"{w:.1f}", f"{c:.1f}"] for i, (w, c) in enumerate(zip(walls, cpus))]
    rows.append(["median", f"**{median(walls):.1f}**", f"{median(cpus):.1f}"])
    table = md_table(["`snakemake -n --configfile " + config + "`", "wall s", "CPU s"], rows)
    per_rule = ", ".join(f"{k} {v}" for k, v in stats.items())
    notes = [
        f"Jobs planned: **{total}** ({per_rule}).",
        "Snakemake counts the jobs still to run in this checkout: the whole grid where none of its outputs exist.",
        f"{repeats} runs in a row, each a fresh process; CPU s is the process's user + system time.",
    ]
    return Part(
        "dryrun",
        f"5. Dry-run time of the paper grid ({config})",
        "none set in the issue (a figure to report)",
        None,
        table,
        notes,
        {"wall": walls, "cpu": cpus, "jobs": total, "per_rule": stats},
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--configfile", default="config/paper.yaml")
    ap.add_argument("--repeats", type=int, default=1)
    a = ap.parse_args()
    run_part("dryrun", lambda: measure(a.configfile, a.repeats))


if __name__ == "__main__":
    main()
