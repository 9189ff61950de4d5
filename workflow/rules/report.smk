FIGURES = ["acc_vs_macs", "before_after_ft", "layerwise_sparsity", "search_cost"]
REPORT_FILES = ["reports/README.md", "reports/tables/main.md", "reports/tables/main.tex", "reports/tables/main.csv"] + [
    f"reports/figures/{f}.png" for f in FIGURES
]


rule aggregate:
    """One tidy row per finished run, built only from the metrics.json files."""
    input:
        all_metrics(),
    output:
        report("results/summary.csv", caption="../report/summary.rst", category="Tables"),
    log:
        "results/logs/aggregate.log",
    conda:
        "../../environment.yml"
    shell:
        "passprune aggregate {input} --out {output} > {log} 2>&1"


rule report:
    """Tables and figures; regenerate any time without retraining (`snakemake report -F`)."""
    input:
        summary="results/summary.csv",
        metrics=all_metrics(),
    output:
        readme="reports/README.md",
        md=report("reports/tables/main.md", caption="../report/table.rst", category="Tables"),
        tex="reports/tables/main.tex",
        csv="reports/tables/main.csv",
        figures=[report(f"reports/figures/{f}.png", caption=f"../report/{f}.rst", category="Figures") for f in FIGURES],
    log:
        "results/logs/report.log",
    conda:
        "../../environment.yml"
    shell:
        "passprune report --summary {input.summary} --out reports --metrics {input.metrics} > {log} 2>&1"
