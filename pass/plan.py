"""A config's jobs exactly as Snakemake plans them: ``snakemake -n -p`` in an empty working directory, parsed.

Why the dry run and not a second reading of the config: workflow/rules/common.smk is the only place that turns a
config into jobs and their resolved ``--settings`` (per-dataset recipes, epochs converted to steps, transfer
runs, digests). ``passprune estimate`` and ``passprune prefetch`` read those same settings back from the planned
shell commands, so they can never disagree with what the cluster will run. The price is one dry run (about a
minute for the paper grid). Torch-free.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SNAKEFILE = REPO / "Snakefile"


@dataclass(frozen=True)
class PlannedJob:
    """One planned ``passprune <stage>`` call: its rule, wildcards and resolved settings."""

    rule: str
    stage: str
    dataset: str
    arch: str
    seed: int
    settings: dict[str, Any]
    target: float | None = None
    method: str | None = None  # the registered method a search runs (--method)
    label: str | None = None  # the run's label (--label; a variant's or a transfer run's name)
    argv: tuple[str, ...] = ()


@dataclass
class Plan:
    """Snakemake's job table (``counts``, rule -> jobs, as its "Job stats" prints it) and the job commands."""

    configfile: str
    counts: dict[str, int]
    jobs: list[PlannedJob] = field(default_factory=list)

    def by_rule(self) -> dict[str, list[PlannedJob]]:
        out: dict[str, list[PlannedJob]] = {}
        for j in self.jobs:
            out.setdefault(j.rule, []).append(j)
        return out


_RULE = re.compile(r"^(?:local)?rule (\w+):\s*$")
_STATS_ROW = re.compile(r"^(\w+)\s+(\d+)$")


def _flag(argv: list[str], name: str) -> str | None:
    return argv[argv.index(name) + 1] if name in argv and argv.index(name) + 1 < len(argv) else None


def parse_job(rule: str, command: str) -> PlannedJob | None:
    """A planned shell command -> PlannedJob; None for commands that are not a per-model job (aggregate, report)."""
    argv = shlex.split(command.split(" > ", 1)[0])
    if len(argv) < 2 or argv[0] != "passprune" or "--dataset" not in argv:
        return None
    settings = _flag(argv, "--settings") or "{}"
    target = _flag(argv, "--target")
    return PlannedJob(
        rule=rule,
        stage=argv[1],
        dataset=_flag(argv, "--dataset") or "",
        arch=_flag(argv, "--arch") or "",
        seed=int(_flag(argv, "--seed") or 0),
        settings=json.loads(settings),
        target=float(target) if target is not None else None,
        method=_flag(argv, "--method"),
        label=_flag(argv, "--label") or _flag(argv, "--method"),
        argv=tuple(argv),
    )


def parse_dry_run(text: str, configfile: str = "") -> Plan:
    """The output of ``snakemake -n -p`` -> Plan. Raises if the job table is missing (the dry run failed)."""
    if "Job stats:" not in text:
        raise RuntimeError(
            f"snakemake planned no jobs for {configfile or 'the config'}; its output ends with:\n" + text[-3000:]
        )
    counts: dict[str, int] = {}
    for line in text[text.index("Job stats:") :].splitlines()[3:]:
        m = _STATS_ROW.fullmatch(line.strip())
        if not m:
            break
        counts[m.group(1)] = int(m.group(2))
    counts.pop("total", None)
    jobs, rule = [], None
    for line in text.splitlines():
        m = _RULE.match(line)
        if m:
            rule = m.group(1)
        elif line.startswith("Shell command: ") and rule is not None:
            job = parse_job(rule, line[len("Shell command: ") :])
            if job is not None:
                jobs.append(job)
            rule = None
    return Plan(configfile=configfile, counts=counts, jobs=jobs)


def dry_run(
    configfile: str | os.PathLike | None,
    snakefile: Path = SNAKEFILE,
    workdir: str | os.PathLike | None = None,
    timeout: int = 1800,
) -> Plan:
    """Plan ``configfile`` (None: the embedded default) from scratch: ``snakemake -n -p`` in an empty working
    directory (``workdir`` to plan only what is still missing there). Uses the snakemake of this interpreter."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    with tempfile.TemporaryDirectory(prefix="passprune-plan-") as tmp:
        cmd = [
            sys.executable,
            "-m",
            "snakemake",
            "-n",
            "-p",
            "--quiet",
            "reason",
            "--cores",
            "1",
            "-s",
            str(snakefile),
            "-d",
            str(workdir or tmp),
        ]
        cmd += ["--configfile", str(Path(configfile or REPO / "config" / "config.yaml").resolve())]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    text = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise RuntimeError(f"`snakemake -n --configfile {configfile}` failed (exit {proc.returncode}):\n{text[-3000:]}")
    plan = parse_dry_run(text, str(configfile or "config/config.yaml"))
    planned = Counter(j.rule for j in plan.jobs)
    missing = {r: n for r, n in plan.counts.items() if r in planned and planned[r] != n}
    if missing:  # every job of a model rule must have been read back, or the figures would be short
        raise RuntimeError(f"read {dict(planned)} job commands back from the dry run, its table says {plan.counts}")
    return plan
