# passprune: pretrain -> search (PASS, ablations, baselines) -> prune + fine-tune -> evaluate -> aggregate -> report
# Run:  snakemake --cores 2                      (embedded default, config/config.yaml)
#       snakemake --cores 8 --profile slurm      (cluster; see slurm/config.yaml)
from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/pretrain.smk"
include: "workflow/rules/search.smk"
include: "workflow/rules/finetune.smk"
include: "workflow/rules/transfer.smk"
include: "workflow/rules/report.smk"


onstart:
    track_init()


rule all:
    input:
        "results/summary.csv",
        REPORT_FILES,
    default_target: True
