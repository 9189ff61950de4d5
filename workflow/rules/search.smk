rule search:
    """Every method answers one question (dense model + data + MACs target -> kept channels). A variant runs
    its base method under its own label; a control also reads the structure of the method it reuses; a method
    whose sparsity training is shared starts from that training's weights (rule sparsify) and only prunes.
    """
    input:
        unpack(search_inputs),
    output:
        structure=f"{SEARCH_DIR}/structure.json",
        search=f"{SEARCH_DIR}/search.json",
    log:
        f"{LOGS}/search/{{dataset}}/{{arch}}/seed{{seed}}/{{method}}/macs{{target}}.log",
    benchmark:
        f"{BENCH}/search/{{dataset}}/{{arch}}/seed{{seed}}/{{method}}/macs{{target}}.tsv"
    wildcard_constraints:
        method="|".join(m for m in METHODS if LABELS[m] not in PASS_METHODS)
        or "__none__",
    priority: PRIORITY["search"]
    conda:
        "../../environment.yml"
    threads: config["resources"]["search"]["threads"]
    resources:
        **resources_of("search"),
    params:
        settings=settings("search"),
        args=search_args,
        out=lambda wc, output: os.path.dirname(output.structure),
    shell:
        "passprune search --dataset {wildcards.dataset} --arch {wildcards.arch} --seed {wildcards.seed}"
        " {params.args} --target {wildcards.target} --dense {input.dense}"
        " --settings {params.settings:q} --threads {threads} --out {params.out} > {log} 2>&1"


use rule search as search_pass with:
    # PASS and its ablations (and their variants) also keep the hypernetwork + prompt: hypernetwork
    # transfer and prompted fine-tuning read it
    output:
        structure=f"{SEARCH_DIR}/structure.json",
        search=f"{SEARCH_DIR}/search.json",
        hypernet=f"{SEARCH_DIR}/hypernetwork.pt",
    wildcard_constraints:
        method="|".join(m for m in METHODS if LABELS[m] in PASS_METHODS) or "__none__",
