rule sparsify:
    """A sparsity-training method's training (slimming, DepGraph, the *_tp sparsity methods), once per dataset, arch,
    seed, method and training options: it does not depend on the MACs target, so every target's search of the
    method starts from these weights (search.smk, --sparse) instead of training again. GReg-1 trains inside each
    search: its penalty depends on the target (docs/method.md).
    """
    input:
        dense=dense_model,
    output:
        model=f"{SPARSE_DIR}/model.pt",
        metrics=f"{SPARSE_DIR}/metrics.json",
    log:
        f"{LOGS}/sparsify/{{dataset}}/{{arch}}/seed{{seed}}/{{method}}/{{sparse_id}}.log",
    benchmark:
        f"{BENCH}/sparsify/{{dataset}}/{{arch}}/seed{{seed}}/{{method}}/{{sparse_id}}.tsv"
    wildcard_constraints:
        method="|".join(SHARED_SPARSITY) or "__none__",
    priority: PRIORITY["sparsify"]
    conda:
        "../../environment.yml"
    threads: config["resources"]["search"]["threads"]
    resources:
        **resources_of("search"),
    params:
        settings=settings("sparsify"),
        out=lambda wc, output: os.path.dirname(output.model),
    shell:
        "passprune sparsify --dataset {wildcards.dataset} --arch {wildcards.arch} --seed {wildcards.seed}"
        " --method {wildcards.method} --dense {input.dense}"
        " --settings {params.settings:q} --threads {threads} --out {params.out} > {log} 2>&1"
