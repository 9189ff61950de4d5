# The study, resolved once in Python (passprune.study: the schema, the cross-reference checks, every job's
# settings and the targets; torch-free). A bad config fails here, every problem listed, before any job runs.
# This file binds the study's folders to the names the rules use, constrains the wildcards, and holds the
# short input functions and params that ask the study for a job's files and settings.
import json
import os
import subprocess

from passprune import study as S

STUDY = S.check(config, repo=workflow.basedir)
LABELS = (
    STUDY.labels
)  # every method label of the study -> the registered method it runs
METHODS = list(LABELS)
PASS_METHODS = (
    STUDY.caps.pass_methods
)  # PASS and its ablations: they save a hypernetwork
NAME = "[A-Za-z0-9_]+"

# ----------------------------------------------------------------------------- paths (passprune.study.layout)
# Every study lives in its own folder; dense models are shared between studies whose pretraining settings are
# identical (their folder is named by a digest of those settings). Transfer runs sit beside the ordinary runs,
# named by kind, method and source (three wildcards; the kinds are described in transfer.smk).
LAYOUT = STUDY.layout
STUDY_DIR = LAYOUT.study_dir
DENSE_DIR = S.DENSE_DIR
RUN_DIR = LAYOUT.run_dir_template
SEARCH_DIR = LAYOUT.search_dir_template
XFER = S.XFER
# A shared sparsity training (the sparsify rule), one per dataset, arch, seed, method and training options, read by
# every target's search of that method; named by the method and the digest of its training's settings.
SPARSE_DIR = LAYOUT.sparse_dir_template
SHARED_SPARSITY = sorted(
    STUDY.caps.shared_sparsity
)  # methods whose sparsity training does not depend on the target
XFER_DIR = LAYOUT.xfer_dir_template
XFER_FINETUNED_KINDS = (
    S.XFER_FINETUNED_KINDS
)  # searched by a transfer rule, then fine-tuned by finetune_transfer
# Fine-tuning budgets (passprune.study.budgets): a study that lists finetune_budgets fine-tunes each structure
# once per budget, in the run folder's ft-{budget} folder (FT); without the list, FT is empty and a run's
# fine-tuning writes into the run folder itself, as it always did.
BUDGETS = [b for b in STUDY.budgets if b is not None]
FT = S.ft_dir(
    "", "{budget}" if BUDGETS else None
)  # the budget folder level, or nothing
RUN_FT_DIR = f"{RUN_DIR}{FT}"
XFER_FT_DIR = f"{XFER_DIR}{FT}"
LOGS = f"{STUDY_DIR}/logs"
BENCH = f"{STUDY_DIR}/benchmarks"
SUMMARY = LAYOUT.summary
REPORT_DIR = LAYOUT.report_dir
STATE_FILE = LAYOUT.state_file
STUDY_FILE = (
    LAYOUT.study_file
)  # the resolved config and the dense folders, for the study's MLflow run


wildcard_constraints:
    dataset=NAME,
    arch=NAME,
    seed=r"\d+",
    target=r"[0-9.]+",
    source=NAME,
    dense_id=r"[0-9a-f]{12}",
    sparse_id=r"[0-9a-f]{12}",
    budget="|".join(BUDGETS) or "__none__",


# Where jobs log (MLflow): handed over in the environment, not in the jobs' settings, so that a change of
# tracking store or study never reruns a job (a dense model shared by two studies would look changed).
# Cluster jobs re-read this file, so they set it too. Threads reach a job as --threads {threads}.
TRACKING = STUDY.resolved_config()["tracking"]
os.environ.update(PASSPRUNE_TRACKING=json.dumps({**TRACKING, "state_file": STATE_FILE}))


# ----------------------------------------------------------------------------- input functions and params
def dense_dir(wc):
    return S.dense_dir(STUDY, wc.dataset, wc.arch, wc.seed)


def dense_model(wc):
    return f"{dense_dir(wc)}/model.pt"


def dense_metrics(wc):
    """Read by fine-tuning next to the dense model (the scratch control replays its pretraining budget)."""
    return f"{dense_dir(wc)}/metrics.json"


def settings(stage, **fixed):
    """A params function: the job's --settings JSON (``fixed`` replaces wildcards, e.g. the method a transfer
    rule runs)."""
    return lambda wc: S.settings_json(
        S.job_settings(STUDY, stage, **{**dict(wc.items()), **fixed})
    )


def search_inputs(wc):
    """The dense model, for a control the structure of the method it reuses (same run otherwise), and for a
    method whose sparsity training is shared the folder of that training (the sparsify rule).
    """
    inputs = {"dense": dense_model(wc)}
    ref = STUDY.reference_of(wc.method)
    if ref is not None:
        run = LAYOUT.run_dir(wc.dataset, wc.arch, wc.seed, ref, wc.target)
        inputs["reference"] = f"{run}/search/structure.json"
    if STUDY.shares_sparsity(wc.method):
        sparse = S.sparse_dir(STUDY, wc.dataset, wc.arch, wc.seed, wc.method)
        inputs.update(
            sparse=f"{sparse}/model.pt", sparse_metrics=f"{sparse}/metrics.json"
        )
    return inputs


def search_args(wc, input):
    args = f"--method {LABELS[wc.method]} --label {wc.method}"
    if "reference" in input.keys():
        args += f" --reference {input.reference}"
    if "sparse" in input.keys():
        args += f" --sparse {os.path.dirname(input.sparse)}"
    return args


#: Scheduling order where cores are scarce (a laptop, a full cluster queue): upstream stages first, since every
#: dense model gates a whole (dataset, arch, seed) and the transfers' chains are the DAG's longest. Snakemake's
#: scheduler maximises the SUM of the chosen jobs' priorities, so with small steps a 2-thread pretraining lost to
#: two 1-thread jobs whenever a core came free (on the embedded default a transfer task's dense model started in
#: the last minute); each level here weighs as much as a hundred jobs of the next. The embedded default's wall
#: time did not change with it (314 s both ways: CPU-bound on 2 cores); what changes is that no stage starves.
PRIORITY = {"pretrain": 10_000, "sparsify": 100, "search": 1, "finetune": 0}


def finetune_priority(wildcards):
    """Among fine-tunings, a control that retrains from scratch first (half a search's weight, so still after the
    searches): it replays the dense pretraining, and started last it ran alone at the end of the embedded default
    (33 s of 221, the other core idle for 11)."""
    return PRIORITY["finetune"] + (0.5 if STUDY.reinits(wildcards.method) else 0)


def resources_of(stage):
    r = config["resources"][stage]
    return {
        "mem_mb": r["mem_mb"],
        "runtime": r["runtime"],
        **({"gpu": r["gpu"]} if r.get("gpu") else {}),
    }


def maybe_protected(path):
    return protected(path) if STUDY.config["protect_dense"] else path


# ----------------------------------------------------------------------------- warm job start
def start_job_server(executor, log):
    """Jobs on this machine start as forks of one process that imported torch (passprune.jobserver); its
    socket reaches them through the environment they inherit."""
    from passprune import jobserver

    if jobserver.wanted(executor, STUDY.config["device"]):
        os.environ[jobserver.ENV] = jobserver.start(jobserver.log_beside(log))


def stop_job_server():
    from passprune import jobserver

    jobserver.stop(os.environ.pop(jobserver.ENV, None))


# ----------------------------------------------------------------------------- MLflow, around the jobs
def track_init():
    """Before the jobs fan out: write the study file (rewritten only when it changes, so a rerun touches no
    file) and, when jobs log live, create the store, the study's experiment and its study run once
    (passprune.tracking); otherwise the closing track-sync creates them.
    """
    if not STUDY.tracking.enabled:
        return
    info = {
        "study": STUDY.name,
        "config": STUDY.resolved_config(),
        "dense_dirs": S.dense_dirs(STUDY),
        "repo": workflow.basedir,
    }
    text = json.dumps(info, indent=2, sort_keys=True, default=str) + "\n"
    if not os.path.exists(STUDY_FILE) or open(STUDY_FILE).read() != text:
        from passprune.files import atomic_write_text

        atomic_write_text(STUDY_FILE, text)
    if STUDY.tracking.sync and not STUDY.tracking.live:
        return  # no job logs: the closing track-sync creates the study run (one mlflow start-up, not two)
    uri = os.environ.get("MLFLOW_TRACKING_URI") or STUDY.tracking.uri
    cmd = [
        "passprune",
        "track-init",
        "--uri",
        uri,
        "--experiment",
        STUDY.tracking.experiment,
    ]
    subprocess.run(
        cmd + ["--study", STUDY.name, "--state-file", STATE_FILE], check=False
    )


def track_close(status):
    """When the workflow ends: log every finished job the store is missing (a server that was down, a job whose
    logging stopped), then mark the study run FINISHED or FAILED. Never fails the workflow.
    """
    if not STUDY.tracking.enabled:
        return
    if STUDY.tracking.sync and os.path.exists(STUDY_FILE):
        cmd = ["passprune", "track-sync", STUDY_DIR, "--close", status]
    elif os.path.exists(STATE_FILE):
        cmd = [
            "passprune",
            "track-close",
            "--state-file",
            STATE_FILE,
            "--status",
            status,
        ]
    else:
        return
    subprocess.run(cmd, check=False)
