# Transfer between tasks of the same architecture (folders: XFER_DIR in common.smk). The hypernet and
# random_widths kinds are fine-tuned by `finetune_transfer` (finetune.smk).
#  structure:     the source's kept channels, applied to the target's dense model, then the shared fine-tuning.
#  hypernet:      the source's PASS hypernetwork + encoder, a new prompt learned briefly on the target.
#  random_widths: random channels at the source structure's per-group widths (control for `structure`).
#  target_search: the method searched on the target itself (an ordinary run; no rule of its own).
# In a study that lists fine-tuning budgets, every fine-tuned transfer run is fine-tuned once per budget (FT).
SOURCE_SEARCH = LAYOUT.source_search_template
XFER_HYPERNET = LAYOUT.xfer_kind_template("hypernet")
XFER_RANDOM_WIDTHS = LAYOUT.xfer_kind_template("random_widths")
XFER_STRUCTURE = LAYOUT.xfer_kind_template("structure")


rule transfer_structure:
    input:
        dense=dense_model,
        structure=f"{SOURCE_SEARCH}/structure.json",
    output:
        model=f"{XFER_STRUCTURE}{FT}/model.pt",
        metrics=f"{XFER_STRUCTURE}{FT}/metrics.json",
    log:
        f"{LOGS}/transfer/{{dataset}}/{{arch}}/seed{{seed}}/structure-{{method}}-from-{{source}}/macs{{target}}{FT}.log",
    wildcard_constraints:
        method=NAME,
    priority: PRIORITY["finetune"]
    conda:
        "../../environment.yml"
    threads: config["resources"]["finetune"]["threads"]
    resources:
        **resources_of("finetune"),
    params:
        settings=settings("finetune", method=None),  # a transfer run: its weights start from a dense model
        out=lambda wc, output: os.path.dirname(output.model),
        search=lambda wc, input: os.path.dirname(input.structure),
    shell:
        "passprune finetune --dataset {wildcards.dataset} --arch {wildcards.arch} --seed {wildcards.seed}"
        " --target {wildcards.target} --dense {input.dense} --search {params.search} --structure-only"
        " --label {wildcards.method}_structure_transfer --source-dataset {wildcards.source}"
        " --settings {params.settings:q} --threads {threads} --out {params.out} > {log} 2>&1"


rule transfer_hypernet_search:
    input:
        dense=dense_model,
        hypernet=f"{SOURCE_SEARCH}/hypernetwork.pt",
    output:
        structure=f"{XFER_HYPERNET}/search/structure.json",
        search=f"{XFER_HYPERNET}/search/search.json",
        hypernet=f"{XFER_HYPERNET}/search/hypernetwork.pt",
    log:
        f"{LOGS}/transfer/{{dataset}}/{{arch}}/seed{{seed}}/hypernet-{{method}}-from-{{source}}/macs{{target}}.log",
    wildcard_constraints:
        method="|".join(PASS_METHODS),
    priority: PRIORITY["search"]
    conda:
        "../../environment.yml"
    threads: config["resources"]["search"]["threads"]
    resources:
        **resources_of("search"),
    params:
        settings=settings("search", method="pass_hypertransfer"),
        out=lambda wc, output: os.path.dirname(output.structure),
    shell:
        "passprune search --dataset {wildcards.dataset} --arch {wildcards.arch} --seed {wildcards.seed}"
        " --method pass_hypertransfer --target {wildcards.target} --dense {input.dense}"
        " --source {input.hypernet} --settings {params.settings:q} --threads {threads} --out {params.out} > {log} 2>&1"


rule transfer_random_widths_search:
    input:
        dense=dense_model,
        reference=f"{SOURCE_SEARCH}/structure.json",
    output:
        structure=f"{XFER_RANDOM_WIDTHS}/search/structure.json",
        search=f"{XFER_RANDOM_WIDTHS}/search/search.json",
    log:
        f"{LOGS}/transfer/{{dataset}}/{{arch}}/seed{{seed}}/random_widths-{{method}}-from-{{source}}/macs{{target}}.log",
    wildcard_constraints:
        method=NAME,
    priority: PRIORITY["search"]
    conda:
        "../../environment.yml"
    threads: config["resources"]["search"]["threads"]
    resources:
        **resources_of("search"),
    params:
        settings=settings("search", method="random_widths"),
        out=lambda wc, output: os.path.dirname(output.structure),
    shell:
        "passprune search --dataset {wildcards.dataset} --arch {wildcards.arch} --seed {wildcards.seed}"
        " --method random_widths --reference {input.reference} --target {wildcards.target} --dense {input.dense}"
        " --settings {params.settings:q} --threads {threads} --out {params.out} > {log} 2>&1"
