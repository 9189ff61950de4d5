# passprune: pretrain -> [sparsify ->] search (PASS, ablations, baselines) -> prune + fine-tune -> evaluate -> aggregate -> report
# Run:  snakemake --cores 2                      (embedded default, config/config.yaml)
#       snakemake --cores 8 --profile slurm      (cluster; see slurm/config.yaml)
from snakemake.utils import min_version

min_version("9.0")


# The embedded default applies only when no --configfile is given: a --configfile (config/test.yaml,
# config/paper.yaml) REPLACES it; merged onto it, test.yaml would inherit all 13 methods of the default.
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/pretrain.smk"
include: "workflow/rules/sparsify.smk"
include: "workflow/rules/search.smk"
include: "workflow/rules/finetune.smk"
include: "workflow/rules/transfer.smk"
include: "workflow/rules/report.smk"


onstart:
    # the executor is known only now (None while parsing): refuse live SQLite logging from cluster nodes
    from passprune.tracking_policy import check_live_store, executor_name

    problems = check_live_store(TRACKING, executor_name(workflow))
    if problems:
        raise ValueError("invalid config:\n  - " + "\n  - ".join(problems))
    track_init()
    start_job_server(executor_name(workflow), log)


onsuccess:
    stop_job_server()
    track_close("FINISHED")


onerror:
    stop_job_server()
    track_close("FAILED")


rule all:
    default_target: True
    input:
        SUMMARY,
        REPORT_FILES,
