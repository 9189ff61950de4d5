rule finetune:
    """Physical pruning, the shared fine-tuning budget (once per budget of a study that lists several, all reading
    the one search), evaluation (test once), latency."""
    input:
        dense=dense_model,
        dense_metrics=dense_metrics,
        structure=f"{SEARCH_DIR}/structure.json",
    output:
        model=f"{RUN_FT_DIR}/model.pt",
        metrics=f"{RUN_FT_DIR}/metrics.json",
    log:
        f"{LOGS}/finetune/{{dataset}}/{{arch}}/seed{{seed}}/{{method}}/macs{{target}}{FT}.log",
    benchmark:
        f"{BENCH}/finetune/{{dataset}}/{{arch}}/seed{{seed}}/{{method}}/macs{{target}}{FT}.tsv"
    wildcard_constraints:
        method=NAME,
    priority: finetune_priority
    conda:
        "../../environment.yml"
    threads: config["resources"]["finetune"]["threads"]
    resources:
        **resources_of("finetune"),
    params:
        settings=settings("finetune"),
        out=lambda wc, output: os.path.dirname(output.model),
        search=lambda wc, input: os.path.dirname(input.structure),
        transfer="",
    shell:
        "passprune finetune --dataset {wildcards.dataset} --arch {wildcards.arch} --seed {wildcards.seed}"
        " --target {wildcards.target} --dense {input.dense} --search {params.search}"
        " {params.transfer} --settings {params.settings:q} --threads {threads} --out {params.out} > {log} 2>&1"


use rule finetune as finetune_transfer with:
    input:
        dense=dense_model,
        dense_metrics=dense_metrics,
        structure=f"{XFER_DIR}/search/structure.json",
    output:
        model=f"{XFER_FT_DIR}/model.pt",
        metrics=f"{XFER_FT_DIR}/metrics.json",
    log:
        f"{LOGS}/finetune/{{dataset}}/{{arch}}/seed{{seed}}/{XFER}/macs{{target}}{FT}.log",
    benchmark:
        f"{BENCH}/finetune/{{dataset}}/{{arch}}/seed{{seed}}/{XFER}/macs{{target}}{FT}.tsv"
    wildcard_constraints:
        method=NAME,
        kind="|".join(XFER_FINETUNED_KINDS),
    params:
        settings=settings("finetune", method=None),  # a transfer run: its weights start from a dense model
        out=lambda wc, output: os.path.dirname(output.model),
        search=lambda wc, input: os.path.dirname(input.structure),
        transfer=lambda wc: f"--label {wc.method}_{wc.kind}_transfer --source-dataset {wc.source}",
