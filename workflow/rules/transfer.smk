# Transfer between tasks of the same architecture.
#  structure: the source's kept channels, applied to the target's dense model, then the shared fine-tuning.
#  hypernet:  the source's PASS hypernetwork + encoder, a new prompt learned briefly on the target.


rule transfer_structure:
    input:
        dense="results/{dataset}/{arch}/seed{seed}/dense/model.pt",
        structure="results/{source}/{arch}/seed{seed}/{method}/macs{target}/search/structure.json",
    output:
        model="results/{dataset}/{arch}/seed{seed}/xfer_structure-{method}-from-{source}/macs{target}/model.pt",
        metrics="results/{dataset}/{arch}/seed{seed}/xfer_structure-{method}-from-{source}/macs{target}/metrics.json",
    wildcard_constraints:
        method=NAME,
    params:
        settings=settings_finetune,
        out=lambda wc, output: os.path.dirname(output.model),
        search=lambda wc, input: os.path.dirname(input.structure),
    log:
        "results/logs/transfer/{dataset}/{arch}/seed{seed}/structure-{method}-from-{source}/macs{target}.log",
    threads: config["resources"]["finetune"]["threads"]
    resources:
        **resources_of("finetune"),
    conda:
        "../../environment.yml"
    shell:
        "passprune finetune --dataset {wildcards.dataset} --arch {wildcards.arch} --seed {wildcards.seed}"
        " --target {wildcards.target} --dense {input.dense} --search {params.search} --structure-only"
        " --label {wildcards.method}_structure_transfer --source-dataset {wildcards.source}"
        " --settings {params.settings:q} --out {params.out} > {log} 2>&1"


rule transfer_hypernet_search:
    input:
        dense="results/{dataset}/{arch}/seed{seed}/dense/model.pt",
        hypernet="results/{source}/{arch}/seed{seed}/{method}/macs{target}/search/hypernetwork.pt",
    output:
        structure="results/{dataset}/{arch}/seed{seed}/xfer_hypernet-{method}-from-{source}/macs{target}/search/structure.json",
        search="results/{dataset}/{arch}/seed{seed}/xfer_hypernet-{method}-from-{source}/macs{target}/search/search.json",
    wildcard_constraints:
        method="|".join(PASS_METHODS),
    params:
        settings=lambda wc: settings_search(wc, method="pass_hypertransfer"),
        out=lambda wc, output: os.path.dirname(output.structure),
    log:
        "results/logs/transfer/{dataset}/{arch}/seed{seed}/hypernet-{method}-from-{source}/macs{target}.log",
    threads: config["resources"]["search"]["threads"]
    resources:
        **resources_of("search"),
    conda:
        "../../environment.yml"
    shell:
        "passprune search --dataset {wildcards.dataset} --arch {wildcards.arch} --seed {wildcards.seed}"
        " --method pass_hypertransfer --target {wildcards.target} --dense {input.dense}"
        " --source {input.hypernet} --settings {params.settings:q} --out {params.out} > {log} 2>&1"
