"""Writes bench/README.md from the stored parts (bench/figures/*.json): machine, command, figures, verdicts.

Why generated: the figures must be the ones the scripts printed, never numbers pasted by hand; a part that
was not run (or could not be measured) says so instead of showing stale or invented figures.
"""

from __future__ import annotations

import argparse
import subprocess

from common import BENCH_DIR, EMBEDDED_DEFAULT_JOBS, EMBEDDED_DEFAULT_WALL_S, REPO, load_part, machine

PARTS = ["train", "startup", "latency", "rules", "dryrun", "mlflow"]
VERDICT = {True: "**met**", False: "**not met**", None: "no goal set (figure reported)"}


def git_state() -> str:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], capture_output=True, text=True, cwd=REPO).stdout.strip()

    head = git("rev-parse", "--short", "HEAD")
    dirty = git("status", "--porcelain", "--", "pass", "workflow", "Snakefile", "config")
    return f"{head}" + (
        " with uncommitted changes in pass/, workflow/ or config/ (other work in progress)" if dirty else ""
    )


def headline(name: str, p: dict) -> str:
    """One line per part for the summary table, from the part's own figures."""
    f = p.get("figures") or {}
    if not f:
        return "not measured (see the part)"
    if name == "train":
        return (
            f"engine / bare images/s = **{f['ratio']:.3f}** in CPU time ({f['ratio_wall']:.3f} in wall time), "
            f"median of {len(f['pairs'])} interleaved pairs"
        )
    if name == "startup":
        return (
            f"`passprune search --method random` costs **{f['ratio_off']:.2f}x** the CPU s of `import torch` with "
            f"tracking off ({f['job_cpu_off']:.1f} vs {f['import_torch_cpu']:.1f} s), {f['ratio_on']:.2f}x with "
            f"tracking live ({f['job_cpu_on']:.1f} s); medians of one interleaved run"
        )
    if name == "latency":
        vals = [(k, v[f"bs{bs}"]["speedup_per_macs"]) for k, v in f.items() for bs in (1, 64)]
        lo, hi = min(vals, key=lambda kv: kv[1]), max(vals, key=lambda kv: kv[1])
        return (
            f"latency speed-up / MACs speed-up from **{lo[1]:.2f}** ({lo[0]}) to **{hi[1]:.2f}** ({hi[0]}) "
            f"over {len(f)} arch x target pairs"
        )
    if name == "rules":
        return (
            f"{f['benchmarked_jobs']} benchmarked jobs, **{f['job_seconds_sum']:.0f} s** summed wall "
            f"("
            + ", ".join(
                f"{r} {v['seconds']:.0f} s" for r, v in sorted(f["per_rule"].items(), key=lambda kv: -kv[1]["seconds"])
            )
            + ")"
        )
    if name == "dryrun":
        return f"**{min(f['wall']):.0f} s** wall ({min(f['cpu']):.0f} CPU s) for **{f['jobs']}** jobs"
    if name == "mlflow":
        ms, cpu = f["log_metrics_ms"], f.get("log_metrics_cpu_ms", {})
        return "log_metrics: " + ", ".join(
            f"**{v:.0f} ms** wall, {cpu.get(k, float('nan')):.0f} ms CPU ({k})" for k, v in ms.items()
        )
    return ""


def startup_share(startup: dict, rules: dict | None) -> str:
    """Part 2's per-job overhead as a share of the embedded default; from part 4's benchmark files when that
    part found a finished run (so it follows a rerun of ``bash bench/run.sh rules``), else the README's figures.
    Tracking off: the embedded default's jobs write files only (``tracking: live: false``), importing no mlflow."""
    per_job = startup["figures"]["overhead_cpu_off"]
    rf = (rules or {}).get("figures") or {}
    n_jobs, job_sum = rf.get("jobs") or EMBEDDED_DEFAULT_JOBS, rf.get("job_seconds_sum")
    wall = EMBEDDED_DEFAULT_WALL_S
    source = "part 4's benchmark files" if rf else "the README's figures, part 4 not measured"
    text = (
        f"Share of the embedded default ({n_jobs} jobs, {wall} s on the 2-core CI machine; {source}): "
        f"{per_job:.1f} s x {n_jobs} jobs = {per_job * n_jobs:.0f} s of job time"
    )
    if job_sum:
        text += f", {100 * per_job * n_jobs / job_sum:.0f}% of the {job_sum:.0f} s its benchmarked jobs took in all"
    text += (
        f"; at 2 jobs at a time about {per_job * n_jobs / 2:.0f} s, {100 * per_job * n_jobs / 2 / wall:.0f}% "
        f"of its {wall} s wall time. (Not every job is a `passprune` process with torch, and an idle machine's "
        "per-job figure is smaller than this loaded one's, so this is an upper estimate.) These are the costs of a job "
        "started as its own process (`PASSPRUNE_WARM_JOBS=0`, and every cluster job); on one machine the workflow "
        "forks jobs from a job server that imported torch once (README, 'Warm job start on one machine'), which "
        "spares them most of it."
    )
    return text


def startup_breakdown(startup: dict | None) -> str:
    """Where a job's start-up goes, from part 2's probe (CPU seconds per stage), and what was removed."""
    if not startup or not startup.get("figures"):
        return "_Part 2 not measured; no figures to point at._"
    f = startup["figures"]
    c = f["probe_cpu"]
    torch_s, own = c.get("import torch", 0), c.get("import passprune (job modules, torch_pruning)", 0)
    ml, op = c.get("import mlflow (live tracking only)", 0), c.get("MLflow run opened", 0)
    step = c.get("first training step", 0)
    work = sum(c.get(k, 0) for k in ("data (decoded cache + splits)", "model build + load", "PruningSpace"))
    return f"""From part 2's probe (CPU seconds per stage; tracking live, so every stage a job can pay is there):

1. **Removed (issue 19): imports a job did not use.** `files.provenance()` imported torchvision and
   torch_pruning only to read `__version__`; torchvision's import pulls in `torch._dynamo` (3.7 CPU s per job in
   the previous figures, paid by every stage). Versions are now read with `importlib.metadata`. torchvision,
   mlflow, pandas, matplotlib and scipy are imported inside the functions that use them (ImageNet models, folder
   datasets and downloads; live tracking and track-sync; reports and claims); `tests/test_startup.py` runs a
   random-search job and fails if it imports any of them.
2. **Removed: MLflow in jobs that need no live logging.** `config/test.yaml` now runs as the embedded default
   does (`tracking: live: false`): jobs write files only, and one `passprune track-sync` mirrors the study when
   the workflow ends. With tracking live each job pays the mlflow import ({ml:.1f} s) and a SQLite store set-up
   ({op:.1f} s, 'MLflow run opened'); clusters that want runs to appear while jobs run keep `live: true`.
3. **What remains beyond `import torch` ({torch_s:.1f} s)**: passprune's job modules with torch_pruning, which
   the pruning space is built on ({own:.1f} s), and the job's own first work: data from the decoded cache, the
   dense model and its pruning space ({work:.1f} s together). A training job also pays torch's import of
   `torch._dynamo` when it creates its first optimizer (in the probe's 'first training step', {step:.1f} s).
4. `import torch` itself (a CUDA build) is the floor whatever passprune does, and what it costs drifts with the
   machine's load by a factor of two within minutes; hence issue 19's goal as a ratio to it, taken in one
   interleaved run, instead of issue 12's 1.5 s per job."""


def gpu_section(gpu: dict | None) -> list[str]:
    """The GPU part: what ``scripts/gpu-acceptance.sh`` measures and where its figures go, then its table once a GPU
    has run it (``bench/figures/gpu.json``; the ``--cpu`` dry mode never writes there), else that none has."""
    out = [
        "",
        "## GPU acceptance (`scripts/gpu-acceptance.sh`)",
        "",
        "`bash scripts/gpu-acceptance.sh` is the first command on a machine with a GPU (at most 10 minutes on one GPU; "
        "docs/cluster.md says when to run it). It prints the environment (torch, its CUDA and cuDNN, the driver, the "
        "wheel's arch list, the GPU), runs the paper protocol in miniature with `device: cuda` through Snakemake to "
        "the report, and `bench/gpu.py` measures the peak GPU memory of one PASS search step and one Taylor "
        "importance pass at ResNet-50 / 224 px / batch 256 in fp32 (`passprune.memory.full_precision`: the methods' "
        "own bf16 autocast off too) and in bf16 autocast, training and evaluation images/s per paper architecture "
        "(what `passprune estimate`'s GPU-hours then use instead of the published figures), and the masked vs "
        "physically pruned logits and latency on the GPU. It writes `bench/figures/gpu.json` (commit it); "
        "`--cpu --out DIR` is its dry mode, run in CI, which writes only under DIR.",
        "",
    ]
    if not gpu:
        return out + ["_Not run on a GPU yet: `bench/figures/gpu.json` does not exist; only the `--cpu` dry mode has "
                      "run (tests/test_paper_protocol.py), so no figure here is a GPU's._"]  # fmt: skip
    return out + [
        gpu["table"],
        "",
        *[f"- {note}" for note in gpu["notes"]],
        f"- Goal: {gpu['goal']}: {VERDICT[gpu['met']]}.",
        f"- Command: `{gpu['command']}` ({gpu['seconds']:.0f} s; {gpu['machine']['date_utc']}).",
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--command", default="bash bench/run.sh")
    a = ap.parse_args()
    parts = {n: load_part(n) for n in PARTS}
    m = machine()
    stored = [p for p in parts.values() if p]
    loads = [x for p in stored for x in (p["load_before"], p["load_after"])]
    dates = sorted(p["machine"]["date_utc"] for p in stored)
    total_s = sum(p["seconds"] for p in stored)
    out = [
        "# Benchmarks",
        "",
        "Figures printed by the scripts in this folder, not timed tests; this file is generated by "
        "`bench/readme.py` from `bench/figures/*.json` (one file per part). Issue 12, item 5.",
        "",
        "## How to run",
        "",
        "```bash",
        "bash bench/run.sh            # every part, then this README",
        "bash bench/run.sh rules      # part 4 only, after a finished run of config/config.yaml",
        "bash bench/run.sh dryrun     # part 5 only (config/paper.yaml)",
        "```",
        "",
        f"This file was last written by `{a.command}`; each part below names the command that measured it. "
        f"Parts stored: {', '.join(n for n, p in parts.items() if p) or 'none'}; their run time in all: "
        f"{total_s / 60:.1f} min (under the load stated below).",
        "",
        "## Machine",
        "",
        f"- CPU: {m['cpu']} ({m['cores']} cores, `lscpu`); torch {m['torch']}; Python {m['python']}",
        f"- Taken: {dates[0] if dates else '-'} to {dates[-1] if dates else '-'}; code at {git_state()}",
    ]
    if loads:
        out.append(
            f"- **Load**: figures were taken while other programs shared the machine: 1-minute load averages "
            f"{min(loads):.1f} to {max(loads):.1f} on {m['cores']} cores (a load equal to the core count means every "
            "core busy). Absolute wall times are inflated by it; the robust figures are the interleaved ratios "
            "(parts 1 and 3) and the CPU seconds (parts 2, 5 and 6), though CPU seconds grow under contention too "
            "(shared caches, a virtual machine's stolen cycles), so even they overstate an idle machine's times."
        )
    out += ["", "## Summary", "", "| part | goal (issue 12) | measured | goal met? |", "|---|---|---|---|"]
    for n, p in parts.items():
        if p:
            out.append(f"| {p['title']} | {p['goal']} | {headline(n, p)} | {VERDICT[p['met']]} |")
        else:
            out.append(f"| {n} | | not run yet (`bash bench/run.sh {n}`) | |")
    for n, p in parts.items():
        out += ["", f"## {p['title'] if p else n}", ""]
        if not p:
            out.append(f"_Not run yet: `bash bench/run.sh {n}`._")
            continue
        out += [p["table"], ""]
        out += [f"- {note}" for note in p["notes"]]
        if n == "startup" and p.get("figures"):
            out.append(f"- {startup_share(p, parts['rules'])}")
        out += [
            f"- Goal: {p['goal']}: {VERDICT[p['met']]}.",
            f"- Command: `{p['command']}` ({p['seconds']:.0f} s; load {p['load_before']} -> {p['load_after']}; "
            f"{p['machine']['date_utc']}).",
        ]
    out += [
        "",
        "## Where a job's start-up goes",
        "",
        startup_breakdown(parts["startup"]),
    ]
    tp = BENCH_DIR / "throughput.json"
    if tp.is_file():
        out += [
            "",
            "## Per-architecture training throughput",
            "",
            "`bench/throughput.py` (`bash bench/run.sh throughput`) measures images/s per registry architecture for "
            "`passprune estimate`; its figures are in `bench/throughput.json`.",
        ]
    out += gpu_section(load_part("gpu"))
    (BENCH_DIR / "README.md").write_text("\n".join(out) + "\n")
    print(f"\nwrote {BENCH_DIR / 'README.md'}")


if __name__ == "__main__":
    main()
