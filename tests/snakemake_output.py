"""Reading what Snakemake printed: the tests that check the rules' wiring compare a (dry) run's job table and
planned commands with what ``passprune.study`` says the study runs, so the parsing lives here once."""

from __future__ import annotations

import re
import shlex


def job_counts(output: str, *, required: bool = False) -> dict[str, int]:
    """The 'Job stats' table of a (dry) run -> {rule: count}, in its order, without the total.

    ``required``: a run that must have planned jobs (a dry run of a study) fails the test when the table is
    missing, with the output's tail; otherwise (a rerun that may have nothing to do) no table is ``{}``.
    """
    if "Job stats:" not in output:
        assert not required, f"no job table in snakemake's output:\n{output[-3000:]}"
        return {}
    counts = {}
    for line in output[output.index("Job stats:") :].splitlines()[3:]:
        m = re.fullmatch(r"(\w+)\s+(\d+)", line.strip())
        if not m:
            break
        counts[m.group(1)] = int(m.group(2))
    if required:
        counts.pop("total")  # a full table always ends in its total
    else:
        counts.pop("total", None)
    return counts


def planned_jobs(output: str) -> set[tuple[str, str, str]]:
    """(rule, --out, --settings) of every ``passprune`` job a ``snakemake -n -p`` printed."""
    planned, rule = set(), None
    for line in output.splitlines():
        if m := re.match(r"^(?:local)?rule (\w+):\s*$", line):
            rule = m.group(1)
        elif line.startswith("Shell command: passprune ") and "--settings" in line:
            argv = shlex.split(line[len("Shell command: ") :].split(" > ", 1)[0])
            planned.add((rule, argv[argv.index("--out") + 1], argv[argv.index("--settings") + 1]))
    return planned
