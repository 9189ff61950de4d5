"""Part 6: MLflow's cost per logging call, through passprune's own ``JobRun`` on a SQLite store.

Why: every job mirrors its metrics to MLflow (``passprune.tracking.JobRun``), the engine once per epoch and
PASS's search every ``log_every`` steps; a logging call that is slow next to a training step would tax every
study. The store is prepared as the workflow does it (``init_study`` once, then jobs open runs under the
study run), in a temporary folder so that no real store is touched. Measured in one process: opening the
job's run (the first open also builds the SQLAlchemy store), then ``log_metrics`` calls with an engine epoch
record (7 metrics) and with PASS's per-step record (2 metrics), each call one ``log_batch`` transaction.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from common import Part, Timer, load_part, md_table, median, run_part

from passprune.methods import get_method
from passprune.tracking import JobRun, init_study

EPOCH_RECORD = {
    "epoch": 1,
    "train_loss": 0.5,
    "train_top1": 80.0,
    "val_top1": 79.0,
    "val_loss": 0.6,
    "lr": 0.01,
    "seconds": 12.0,
}
STEP_RECORD = {"search_loss": 0.7, "search_top1": 75.0}
EPOCH, STEP = "epoch record (7 metrics)", "step record (2 metrics)"


def measure(calls: int) -> Part:
    tmp = Path(tempfile.mkdtemp(prefix="passprune-bench-mlflow-"))
    try:
        uri = f"sqlite:///{tmp}/mlflow.db"
        with Timer() as t_import:
            import mlflow.entities  # noqa: F401
            import mlflow.tracking  # noqa: F401
        with Timer() as t_init:
            init_study(uri, "bench", "bench", tmp / "mlflow_study.json")
        settings = {"enabled": True, "uri": uri, "experiment": "bench", "state_file": str(tmp / "mlflow_study.json")}
        opens = []
        runs = []
        for i in range(3):
            with Timer() as t:
                runs.append(JobRun(settings, f"bench/job{i}", {"stage": "bench"}, {"a": 1, "b": {"c": 2}}))
            opens.append(t.s * 1000)
        run = runs[-1]
        if run.run is None:
            raise RuntimeError("JobRun did not open an MLflow run; see the [tracking] warning above")
        per, per_cpu = {}, {}
        for name, rec in ((EPOCH, EPOCH_RECORD), (STEP, STEP_RECORD)):
            run.log_metrics(rec, 0)  # warm-up
            ms, cpu_ms = [], []
            for step in range(1, calls + 1):
                t0, c0 = time.perf_counter(), time.process_time()
                run.log_metrics(rec, step)
                ms.append((time.perf_counter() - t0) * 1000)
                cpu_ms.append((time.process_time() - c0) * 1000)
            per[name] = ms
            per_cpu[name] = cpu_ms
        for r in runs:
            r.__exit__(None, None, None)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    step_ms = (load_part("train") or {}).get("figures", {}).get("ms_per_step_engine")
    every = get_method("pass").defaults.get("log_every")
    rows = [
        [
            "import mlflow (tracking + entities, in this process)",
            f"{t_import.s * 1000:.0f}",
            f"CPU {t_import.cpu * 1000:.0f} ms",
        ],
        [
            "init_study (store + experiment + study run; once per study)",
            f"{t_init.s * 1000:.0f}",
            f"CPU {t_init.cpu * 1000:.0f} ms",
        ],
        ["JobRun open (first / second / third in this process)", " / ".join(f"{x:.0f}" for x in opens), ""],
    ]
    for name, ms in per.items():
        ms_sorted = sorted(ms)
        p90 = ms_sorted[int(0.9 * (len(ms) - 1))]
        cpu = median(per_cpu[name])
        rel = (
            f"; {100 * cpu / step_ms:.0f}% of a training step's CPU time ({step_ms:.0f} ms, part 1)" if step_ms else ""
        )
        rows.append([f"log_metrics, {name}", f"**{median(ms):.1f}** (p90 {p90:.1f})", f"CPU {cpu:.1f} ms{rel}"])
    table = md_table(["call", "wall ms (median)", "CPU time; relative"], rows)
    notes = [
        f"{calls} calls per record kind, SQLite store in a temporary folder, one process.",
        "A call's wall time includes SQLite's commit (a disk sync), which waits on a shared disk; its CPU "
        "time is the work.",
        "Per job, the figure that matters is the open: a fresh process pays the mlflow import and the store's "
        "set-up again (part 2's probe rows 'import mlflow' and 'MLflow run opened').",
        "The engine logs once per epoch and PASS's search every `log_every` steps, so per-step cost is this "
        "call's time divided by the steps between calls"
        + (
            f": for PASS (log_every {every}) {median(per_cpu[STEP]) / every:.1f} ms CPU per step"
            + (f", {100 * median(per_cpu[STEP]) / every / step_ms:.1f}% of a training step." if step_ms else ".")
            if every
            else "."
        ),
    ]
    figures = {
        "log_metrics_cpu_ms": {k: median(v) for k, v in per_cpu.items()},
        "import_ms": t_import.s * 1000,
        "import_cpu_ms": t_import.cpu * 1000,
        "init_study_ms": t_init.s * 1000,
        "init_study_cpu_ms": t_init.cpu * 1000,
        "open_ms": opens,
        "log_metrics_ms": {k: median(v) for k, v in per.items()},
        "calls": calls,
    }
    return Part(
        "mlflow",
        "6. MLflow overhead per logging call (passprune.tracking.JobRun, SQLite)",
        "none set in the issue (a figure to report)",
        None,
        table,
        notes,
        figures,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--calls", type=int, default=100)
    a = ap.parse_args()
    run_part("mlflow", lambda: measure(a.calls))


if __name__ == "__main__":
    main()
