rule finetune:
    """Physical pruning, the shared fine-tuning budget, evaluation (test once), latency."""
    input:
        dense="results/{dataset}/{arch}/seed{seed}/dense/model.pt",
        structure="results/{dataset}/{arch}/seed{seed}/{method}/macs{target}/search/structure.json",
    output:
        model="results/{dataset}/{arch}/seed{seed}/{method}/macs{target}/model.pt",
        metrics="results/{dataset}/{arch}/seed{seed}/{method}/macs{target}/metrics.json",
    wildcard_constraints:
        method=r"[A-Za-z0-9_]+|xfer_hypernet-[A-Za-z0-9_]+-from-[A-Za-z0-9_]+",
    params:
        settings=settings_finetune,
        out=lambda wc, output: os.path.dirname(output.model),
        search=lambda wc, input: os.path.dirname(input.structure),
        transfer=transfer_args,
    log:
        "results/logs/finetune/{dataset}/{arch}/seed{seed}/{method}/macs{target}.log",
    benchmark:
        "results/benchmarks/finetune/{dataset}/{arch}/seed{seed}/{method}/macs{target}.tsv"
    threads: config["resources"]["finetune"]["threads"]
    resources:
        **resources_of("finetune"),
    conda:
        "../../environment.yml"
    shell:
        "passprune finetune --dataset {wildcards.dataset} --arch {wildcards.arch} --seed {wildcards.seed}"
        " --target {wildcards.target} --dense {input.dense} --search {params.search}"
        " {params.transfer} --settings {params.settings:q} --out {params.out} > {log} 2>&1"
