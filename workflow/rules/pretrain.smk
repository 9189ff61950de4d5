rule pretrain:
    """Dense model, trained once per (dataset, arch, seed, settings digest) and reused by every method and
    target, and by every study whose pretraining settings are identical (results/_dense/.../{dense_id}).
    """
    output:
        # on a cluster a dense model costs hours: `protect_dense: true` makes it read-only, so no rerun or
        # accidental `-R pretrain` can overwrite it (delete it by hand to retrain)
        model=maybe_protected(f"{DENSE_DIR}/model.pt"),
        metrics=f"{DENSE_DIR}/metrics.json",
    log:
        f"{DENSE_DIR}/pretrain.log",
    benchmark:
        f"{DENSE_DIR}/benchmark.tsv"
    priority: PRIORITY["pretrain"]
    conda:
        "../../environment.yml"
    threads: config["resources"]["pretrain"]["threads"]
    resources:
        **resources_of("pretrain"),
    params:
        settings=settings("pretrain"),
        out=lambda wc, output: os.path.dirname(output.model),
    shell:
        "passprune pretrain --dataset {wildcards.dataset} --arch {wildcards.arch} --seed {wildcards.seed}"
        " --settings {params.settings:q} --threads {threads} --out {params.out} > {log} 2>&1"
