rule finetune:
    """Physical pruning, the shared fine-tuning budget, evaluation (test once), latency."""
    input:
        dense=dense_model,
        dense_metrics=dense_metrics,
        structure=SEARCH_DIR + "/structure.json",
    output:
        model=RUN_DIR + "/model.pt",
        metrics=RUN_DIR + "/metrics.json",
    wildcard_constraints:
        method=r"[A-Za-z0-9_]+|xfer_(hypernet|random_widths)-[A-Za-z0-9_]+-from-[A-Za-z0-9_]+",
    params:
        settings=settings_finetune,
        out=lambda wc, output: os.path.dirname(output.model),
        search=lambda wc, input: os.path.dirname(input.structure),
        transfer=transfer_args,
    log:
        LOGS + "/finetune/{dataset}/{arch}/seed{seed}/{method}/macs{target}.log",
    benchmark:
        BENCH + "/finetune/{dataset}/{arch}/seed{seed}/{method}/macs{target}.tsv"
    threads: config["resources"]["finetune"]["threads"]
    resources:
        **resources_of("finetune"),
    conda:
        "../../environment.yml"
    shell:
        "passprune finetune --dataset {wildcards.dataset} --arch {wildcards.arch} --seed {wildcards.seed}"
        " --target {wildcards.target} --dense {input.dense} --search {params.search}"
        " {params.transfer} --settings {params.settings:q} --threads {threads} --out {params.out} > {log} 2>&1"
