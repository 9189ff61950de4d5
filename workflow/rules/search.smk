_BASELINES = [m for m in METHODS if m not in PASS_METHODS] or ["__none__"]


rule search_pass:
    """PASS and its ablations; the hypernetwork + prompt are kept for hypernetwork transfer."""
    input:
        dense="results/{dataset}/{arch}/seed{seed}/dense/model.pt",
    output:
        structure="results/{dataset}/{arch}/seed{seed}/{method}/macs{target}/search/structure.json",
        search="results/{dataset}/{arch}/seed{seed}/{method}/macs{target}/search/search.json",
        hypernet="results/{dataset}/{arch}/seed{seed}/{method}/macs{target}/search/hypernetwork.pt",
    wildcard_constraints:
        method="|".join(PASS_METHODS),
    params:
        settings=settings_search,
        out=lambda wc, output: os.path.dirname(output.structure),
    log:
        "results/logs/search/{dataset}/{arch}/seed{seed}/{method}/macs{target}.log",
    benchmark:
        "results/benchmarks/search/{dataset}/{arch}/seed{seed}/{method}/macs{target}.tsv"
    threads: config["resources"]["search"]["threads"]
    resources:
        **resources_of("search"),
    conda:
        "../../environment.yml"
    shell:
        "passprune search --dataset {wildcards.dataset} --arch {wildcards.arch} --seed {wildcards.seed}"
        " --method {wildcards.method} --target {wildcards.target} --dense {input.dense}"
        " --settings {params.settings:q} --out {params.out} > {log} 2>&1"


rule search_baseline:
    """Every other method: same question (dense model + data + MACs target -> kept channels)."""
    input:
        dense="results/{dataset}/{arch}/seed{seed}/dense/model.pt",
    output:
        structure="results/{dataset}/{arch}/seed{seed}/{method}/macs{target}/search/structure.json",
        search="results/{dataset}/{arch}/seed{seed}/{method}/macs{target}/search/search.json",
    wildcard_constraints:
        method="|".join(_BASELINES),
    params:
        settings=settings_search,
        out=lambda wc, output: os.path.dirname(output.structure),
    log:
        "results/logs/search/{dataset}/{arch}/seed{seed}/{method}/macs{target}.log",
    benchmark:
        "results/benchmarks/search/{dataset}/{arch}/seed{seed}/{method}/macs{target}.tsv"
    threads: config["resources"]["search"]["threads"]
    resources:
        **resources_of("search"),
    conda:
        "../../environment.yml"
    shell:
        "passprune search --dataset {wildcards.dataset} --arch {wildcards.arch} --seed {wildcards.seed}"
        " --method {wildcards.method} --target {wildcards.target} --dense {input.dense}"
        " --settings {params.settings:q} --out {params.out} > {log} 2>&1"
