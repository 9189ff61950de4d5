rule search:
    """Every method answers one question (dense model + data + MACs target -> kept channels). A variant runs
    its base method under its own label; a control also reads the structure of the method it reuses."""
    input:
        unpack(search_inputs),
    output:
        structure=SEARCH_DIR + "/structure.json",
        search=SEARCH_DIR + "/search.json",
    wildcard_constraints:
        method="|".join(m for m in METHODS if LABELS[m] not in PASS_METHODS) or "__none__",
    params:
        settings=settings_search,
        args=search_args,
        out=lambda wc, output: os.path.dirname(output.structure),
    log:
        LOGS + "/search/{dataset}/{arch}/seed{seed}/{method}/macs{target}.log",
    benchmark:
        BENCH + "/search/{dataset}/{arch}/seed{seed}/{method}/macs{target}.tsv"
    threads: config["resources"]["search"]["threads"]
    resources:
        **resources_of("search"),
    conda:
        "../../environment.yml"
    shell:
        "passprune search --dataset {wildcards.dataset} --arch {wildcards.arch} --seed {wildcards.seed}"
        " {params.args} --target {wildcards.target} --dense {input.dense}"
        " --settings {params.settings:q} --threads {threads} --out {params.out} > {log} 2>&1"


use rule search as search_pass with:
    # PASS and its ablations (and their variants) also keep the hypernetwork + prompt: hypernetwork
    # transfer and prompted fine-tuning read it
    output:
        structure=SEARCH_DIR + "/structure.json",
        search=SEARCH_DIR + "/search.json",
        hypernet=SEARCH_DIR + "/hypernetwork.pt",
    wildcard_constraints:
        method="|".join(m for m in METHODS if LABELS[m] in PASS_METHODS) or "__none__",
