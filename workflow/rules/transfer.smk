# Transfer between tasks of the same architecture (see XFER in common.smk for the kinds).
#  structure:     the source's kept channels, applied to the target's dense model, then the shared fine-tuning.
#  hypernet:      the source's PASS hypernetwork + encoder, a new prompt learned briefly on the target.
#  random_widths: random channels at the source structure's per-group widths (control for `structure`).
#  target_search: the method searched on the target itself (an ordinary run; no rule of its own).
SOURCE_SEARCH = STUDY_DIR + "/{source}/{arch}/seed{seed}/{method}/macs{target}/search"
XFER_DIR = STUDY_DIR + "/{dataset}/{arch}/seed{seed}/xfer_{kind}-{method}-from-{source}/macs{target}"


rule transfer_structure:
    input:
        dense=dense_model,
        structure=SOURCE_SEARCH + "/structure.json",
    output:
        model=XFER_DIR.replace("{kind}", "structure") + "/model.pt",
        metrics=XFER_DIR.replace("{kind}", "structure") + "/metrics.json",
    wildcard_constraints:
        method=NAME,
    params:
        settings=settings_finetune,
        out=lambda wc, output: os.path.dirname(output.model),
        search=lambda wc, input: os.path.dirname(input.structure),
    log:
        LOGS + "/transfer/{dataset}/{arch}/seed{seed}/structure-{method}-from-{source}/macs{target}.log",
    threads: config["resources"]["finetune"]["threads"]
    resources:
        **resources_of("finetune"),
    conda:
        "../../environment.yml"
    shell:
        "passprune finetune --dataset {wildcards.dataset} --arch {wildcards.arch} --seed {wildcards.seed}"
        " --target {wildcards.target} --dense {input.dense} --search {params.search} --structure-only"
        " --label {wildcards.method}_structure_transfer --source-dataset {wildcards.source}"
        " --settings {params.settings:q} --threads {threads} --out {params.out} > {log} 2>&1"


rule transfer_hypernet_search:
    input:
        dense=dense_model,
        hypernet=SOURCE_SEARCH + "/hypernetwork.pt",
    output:
        structure=XFER_DIR.replace("{kind}", "hypernet") + "/search/structure.json",
        search=XFER_DIR.replace("{kind}", "hypernet") + "/search/search.json",
        hypernet=XFER_DIR.replace("{kind}", "hypernet") + "/search/hypernetwork.pt",
    wildcard_constraints:
        method="|".join(PASS_METHODS),
    params:
        settings=lambda wc: settings_search(wc, method="pass_hypertransfer"),
        out=lambda wc, output: os.path.dirname(output.structure),
    log:
        LOGS + "/transfer/{dataset}/{arch}/seed{seed}/hypernet-{method}-from-{source}/macs{target}.log",
    threads: config["resources"]["search"]["threads"]
    resources:
        **resources_of("search"),
    conda:
        "../../environment.yml"
    shell:
        "passprune search --dataset {wildcards.dataset} --arch {wildcards.arch} --seed {wildcards.seed}"
        " --method pass_hypertransfer --target {wildcards.target} --dense {input.dense}"
        " --source {input.hypernet} --settings {params.settings:q} --threads {threads} --out {params.out} > {log} 2>&1"


rule transfer_random_widths_search:
    input:
        dense=dense_model,
        reference=SOURCE_SEARCH + "/structure.json",
    output:
        structure=XFER_DIR.replace("{kind}", "random_widths") + "/search/structure.json",
        search=XFER_DIR.replace("{kind}", "random_widths") + "/search/search.json",
    wildcard_constraints:
        method=NAME,
    params:
        settings=lambda wc: settings_search(wc, method="random_widths"),
        out=lambda wc, output: os.path.dirname(output.structure),
    log:
        LOGS + "/transfer/{dataset}/{arch}/seed{seed}/random_widths-{method}-from-{source}/macs{target}.log",
    threads: config["resources"]["search"]["threads"]
    resources:
        **resources_of("search"),
    conda:
        "../../environment.yml"
    shell:
        "passprune search --dataset {wildcards.dataset} --arch {wildcards.arch} --seed {wildcards.seed}"
        " --method random_widths --reference {input.reference} --target {wildcards.target} --dense {input.dense}"
        " --settings {params.settings:q} --threads {threads} --out {params.out} > {log} 2>&1"
