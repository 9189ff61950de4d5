"""Part 4: per-rule wall times of the embedded default, from Snakemake's own benchmark files.

Why read files rather than run the study here: the embedded default takes 3-5 minutes on 2 cores and
the lead runs it once at the end; this part only reads what that run left behind, so it is cheap to rerun
alone (``bash bench/run.sh rules``) after it.

Which files: every job of the study that has a ``benchmark:`` directive (pretrain, search, finetune) writes
one TSV (``s`` = wall seconds, ``cpu_time``, ``max_rss`` ...). The study's own are under
``results/<study>/benchmarks/{search,finetune}/``; the dense models it uses live under the shared
``results/_dense/.../<digest>/benchmark.tsv``. Which files belong to the study is asked of Snakemake itself
(``snakemake -n -F`` lists every planned job with its rule and benchmark file, running nothing), so stale
files of an older config are not counted. A dense model shared with an earlier study was trained by that
study, which its TSV's date shows.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import re
import subprocess
from collections import defaultdict
from pathlib import Path

from common import EMBEDDED_DEFAULT_WALL_S, REPO, Part, md_table, run_part


def read_tsv(path: Path) -> dict[str, float]:
    with path.open() as f:
        row = next(csv.DictReader(f, delimiter="\t"))
    return {k: float(v) if v not in ("", "NA", "-") else float("nan") for k, v in row.items() if k != "h:m:s"}


def planned_benchmarks(config: str) -> tuple[list[tuple[str, Path]], int]:
    """(rule, benchmark TSV) of every job ``config`` plans, and the DAG's job count, from a forced dry run
    (``snakemake -n -F`` lists every job with its rule and benchmark file and runs nothing). Reading only these
    files leaves out stale TSVs of jobs an older config had."""
    p = subprocess.run(["snakemake", "-n", "-F", "--configfile", config], capture_output=True, text=True, cwd=REPO)
    text = p.stdout + p.stderr
    if p.returncode != 0:
        raise RuntimeError(f"snakemake -n -F --configfile {config} failed:\n{text[-2000:]}")
    planned, rule = [], None
    for line in text.splitlines():
        m = re.match(r"^(?:local)?rule (\S+):$", line.strip())
        if m:
            rule = m.group(1)
        m = re.match(r"^benchmark: (\S+)$", line.strip())
        if m and rule:
            planned.append((rule, REPO / m.group(1)))
    total = re.search(r"^total\s+(\d+)$", text, re.M)
    return planned, int(total.group(1)) if total else 0


def warm_started(study: str) -> int:
    """Jobs of the study forked by the workflow's job server (passprune.jobserver): their benchmark files measure
    the client process, so their CPU time and memory are not the job's."""
    import json

    n = 0
    for d in (REPO / "results" / study, REPO / "results" / "_dense"):
        for p in [*d.rglob("metrics.json"), *d.rglob("search.json")]:
            try:
                n += bool((json.loads(p.read_text()).get("provenance") or {}).get("warm_start"))
            except (OSError, ValueError, AttributeError):
                pass
    return n


def measure(study: str, config: str) -> Part:
    bench_dir = REPO / "results" / study / "benchmarks"
    if not bench_dir.is_dir():
        msg = (
            f"no benchmark files: {bench_dir.relative_to(REPO)} does not exist (the embedded default has not been "
            f"run in this checkout). Run `bash scripts/run.sh`, then `bash bench/run.sh rules`."
        )
        return Part(
            "rules",
            f"4. Per-rule wall times of the embedded default ({config})",
            "none set in the issue (figures); issue 19: the study itself within 4 minutes (README)",
            None,
            "_not measured_",
            [msg],
            {},
        )
    planned, dag_jobs = planned_benchmarks(config)
    files = [(rule, p) for rule, p in planned if p.is_file()]
    missing = len(planned) - len(files)
    per_rule: dict[str, list[dict]] = defaultdict(list)
    for rule, p in files:
        rec = read_tsv(p)
        rec["mtime"] = p.stat().st_mtime
        rec["name"] = str(p.relative_to(REPO))
        per_rule[rule].append(rec)
    warm = warm_started(study)
    rows, total, total_cpu = [], 0.0, 0.0
    for rule in sorted(per_rule, key=lambda r: -sum(x["s"] for x in per_rule[r])):
        recs = per_rule[rule]
        s = sum(r["s"] for r in recs)
        cpu = sum(r.get("cpu_time", 0.0) for r in recs)
        top = max(recs, key=lambda r: r["s"])
        total, total_cpu = total + s, total_cpu + cpu
        rows.append(
            [
                rule,
                len(recs),
                f"{s:.0f}",
                f"{s / len(recs):.1f}",
                f"{top['s']:.0f} ({'/'.join(Path(top['name']).with_suffix('').parts[-3:])})",
                f"{cpu:.0f}" if not warm else "n/a",
                f"{max(r['max_rss'] for r in recs):.0f}" if not warm else "n/a",
            ]
        )
    rows.append(
        [
            "**all benchmarked jobs**",
            sum(len(v) for v in per_rule.values()),
            f"**{total:.0f}**",
            "",
            "",
            f"{total_cpu:.0f}" if not warm else "n/a",
            "",
        ]
    )
    mtimes = [r["mtime"] for v in per_rule.values() for r in v]
    newest, oldest = max(mtimes), min(mtimes)
    span = newest - oldest
    fmt = lambda t: dt.datetime.fromtimestamp(t, dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")  # noqa: E731
    table = md_table(["rule", "jobs", "wall s (sum)", "mean s", "longest s (job)", "CPU s (sum)", "max RSS MB"], rows)
    n_jobs = sum(len(v) for v in per_rule.values())
    notes = [
        f"From the {len(files)} benchmark TSVs of the {len(planned)} benchmarked jobs the config plans "
        f"({missing} missing; the DAG has {dag_jobs} jobs in all), written between {fmt(oldest)} and {fmt(newest)} (span {span / 60:.1f} "
        "min; a dense model shared with an earlier study carries that study's date).",
        "Rules without a `benchmark:` directive (aggregate, report) and the MLflow sync of the workflow's end hook are not in these files.",
        f"The jobs' summed wall time is {total:.0f} s; at 2 jobs at a time that is about {total / 2:.0f} s of "
        f"wall, against the README's {EMBEDDED_DEFAULT_WALL_S} s for the whole study.",
    ]
    if warm:
        notes.append(
            f"{warm} jobs were forked by the workflow's job server (passprune.jobserver): their benchmark files "
            "measure the client process, so CPU s and RSS are left out (n/a); wall times are the jobs'. Run the "
            "study with `PASSPRUNE_WARM_JOBS=0 bash scripts/run.sh` before this part for those columns."
        )
    figures = {
        "jobs": dag_jobs or n_jobs,
        "benchmarked_jobs": n_jobs,
        "missing": missing,
        "job_seconds_sum": total,
        "cpu_seconds_sum": None if warm else total_cpu,
        "warm_started_jobs": warm,
        "per_rule": {r: {"jobs": len(v), "seconds": sum(x["s"] for x in v)} for r, v in per_rule.items()},
        "first_written": fmt(oldest),
        "last_written": fmt(newest),
    }
    return Part(
        "rules",
        f"4. Per-rule wall times of the embedded default ({config})",
        "none set in the issue (figures); issue 19: the study itself within 4 minutes (README)",
        None,
        table,
        notes,
        figures,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--study", default="embedded-default")
    ap.add_argument("--configfile", default="config/config.yaml")
    a = ap.parse_args()
    run_part("rules", lambda: measure(a.study, a.configfile))


if __name__ == "__main__":
    main()
