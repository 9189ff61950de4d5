# passprune: pretrain -> search (PASS, ablations, baselines) -> prune + fine-tune -> evaluate -> aggregate -> report
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
include: "workflow/rules/search.smk"
include: "workflow/rules/finetune.smk"
include: "workflow/rules/transfer.smk"
include: "workflow/rules/report.smk"


onstart:
    track_init()


onsuccess:
    track_close("FINISHED")


onerror:
    track_close("FAILED")


rule all:
    default_target: True
    input:
        SUMMARY,
        REPORT_FILES,
