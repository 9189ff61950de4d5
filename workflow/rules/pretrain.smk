rule pretrain:
    """Dense model, trained once per (dataset, arch, seed) and reused by every method and target."""
    output:
        # on a cluster a dense model costs hours: `protect_dense: true` makes it read-only, so no rerun or
        # accidental `-R pretrain` can overwrite it (delete it by hand to retrain)
        model=maybe_protected("results/{dataset}/{arch}/seed{seed}/dense/model.pt"),
        metrics="results/{dataset}/{arch}/seed{seed}/dense/metrics.json",
    params:
        settings=settings_pretrain,
        out=lambda wc, output: os.path.dirname(output.model),
    log:
        "results/logs/pretrain/{dataset}/{arch}/seed{seed}.log",
    benchmark:
        "results/benchmarks/pretrain/{dataset}/{arch}/seed{seed}.tsv"
    threads: config["resources"]["pretrain"]["threads"]
    resources:
        **resources_of("pretrain"),
    conda:
        "../../environment.yml"
    shell:
        "passprune pretrain --dataset {wildcards.dataset} --arch {wildcards.arch} --seed {wildcards.seed}"
        " --settings {params.settings:q} --out {params.out} > {log} 2>&1"
