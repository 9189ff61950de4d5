"""What every benchmark part shares: the machine's description, timing helpers, and the result file.

Why one result file per part (``bench/figures/<part>.json``): the parts take very different times and some
must be rerun alone (``bash bench/run.sh rules`` after the lead's embedded-default run, ``dryrun`` after the
paper grid changes). Each part stores its own figures and table; ``bench/readme.py`` assembles
``bench/README.md`` from whatever parts are stored, so rerunning one part never loses another's figures.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "figures"

#: The embedded default as the README states it (measured from a fresh working directory on the 2-core CI
#: machine); used for shares when no finished run's benchmark files are there to count from.
EMBEDDED_DEFAULT_JOBS = 42
#: With every job started as its own process (PASSPRUNE_WARM_JOBS=0), as the benchmark files of part 4 need:
#: 292 s, 2026-12-08 00:15 UTC (fresh workdir); the same hour's runs with the warm job start took 191 and 208 s
EMBEDDED_DEFAULT_WALL_S = 4 * 60 + 52


def load_average() -> float:
    """1-minute load average: the benchmarks share the machine, so every part records what it ran under."""
    return round(os.getloadavg()[0], 2)


def cpu_model() -> str:
    """The ``lscpu`` model name (falls back to ``platform.processor()`` where lscpu is missing)."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return platform.processor() or "unknown"


def machine() -> dict[str, Any]:
    """What a reader needs to compare figures across machines: CPU, cores, torch build, date."""
    import torch

    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads_default": torch.get_num_threads(),
        "date_utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "host": platform.node(),
    }


def median(xs: Sequence[float]) -> float:
    return float(statistics.median(xs))


def spread(xs: Sequence[float]) -> str:
    """``median [min-max]``: with a handful of repeats under shared load, the range says more than a std."""
    return f"{median(xs):.3g} [{min(xs):.3g}-{max(xs):.3g}]"


def md_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-flavoured markdown table (printed as is and pasted into bench/README.md)."""
    lines = ["| " + " | ".join(str(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


@dataclass
class Part:
    """One benchmark part's stored result: its figures, its table, the issue's goal and whether it is met.

    ``met`` is True / False, or None where the issue sets no goal (a figure to report) or the figure could
    not be taken (``notes`` says why).
    """

    name: str
    title: str
    goal: str
    met: bool | None
    table: str
    notes: list[str] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)
    command: str = ""
    seconds: float = 0.0
    load_before: float = 0.0
    load_after: float = 0.0
    machine: dict[str, Any] = field(default_factory=dict)

    def save(self) -> Path:
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        path = RESULTS_DIR / f"{self.name}.json"
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(asdict(self), indent=1, default=str) + "\n")
        tmp.replace(path)
        return path

    def print(self) -> None:
        verdict = {True: "goal met", False: "goal NOT met", None: "no goal / not measured"}[self.met]
        print(f"\n== {self.title} ({self.seconds:.0f} s; load {self.load_before} -> {self.load_after}) ==")
        print(self.table)
        for n in self.notes:
            print(f"- {n}")
        print(f"goal: {self.goal} -> {verdict}")


def load_part(name: str) -> dict[str, Any] | None:
    path = RESULTS_DIR / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else None


class Timer:
    """``with Timer() as t: ...``; then ``t.s`` (wall seconds, ``perf_counter``) and ``t.cpu`` (this process's
    CPU seconds, all threads: less sensitive than wall time to other programs on a shared machine)."""

    def __enter__(self) -> Timer:
        self.t0, self.c0 = time.perf_counter(), time.process_time()
        self.s = self.cpu = 0.0
        return self

    def __exit__(self, *exc: object) -> None:
        self.s = time.perf_counter() - self.t0
        self.cpu = time.process_time() - self.c0


def run_part(name: str, fn) -> Part:
    """Run one part's ``fn() -> Part``, stamp it with time, load and machine, save and print it."""
    load0, t0 = load_average(), time.perf_counter()
    part = fn()
    part.seconds = round(time.perf_counter() - t0, 1)
    part.load_before, part.load_after = load0, load_average()
    part.machine = machine()
    part.command = part.command or f"bash bench/run.sh {name}"
    part.save()
    part.print()
    return part


def python() -> str:
    """The interpreter the benchmarks run under (the project venv, put first on PATH by bench/run.sh)."""
    return sys.executable
