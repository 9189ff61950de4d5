FIGURES = ["acc_vs_macs", "before_after_ft", "layerwise_sparsity", "search_cost"]
CLAIMS = claims_path(config["claims"]) if config.get("claims") else None
if CLAIMS:
    FIGURES.append("claims_forest")
TABLES = ["main", "search_cost"] + (["claims"] if CLAIMS else [])
REPORT_FILES = (
    [f"{REPORT_DIR}/README.md"]
    + [f"{REPORT_DIR}/tables/{t}.{x}" for t in TABLES for x in ("md", "tex", "csv")]
    + [f"{REPORT_DIR}/figures/{f}.png" for f in FIGURES]
)


rule aggregate:
    """One tidy row per finished run, built only from the metrics.json files."""
    input:
        all_metrics(),
    output:
        report(SUMMARY, caption="../report/summary.rst", category="Tables"),
    log:
        f"{LOGS}/aggregate.log",
    conda:
        "../../environment.yml"
    shell:
        "passprune aggregate {input} --out {output} > {log} 2>&1"


rule report:
    """Claims with paired statistics, tables and figures; regenerate any time without retraining
    (`snakemake report -F`)."""
    input:
        summary=SUMMARY,
        metrics=all_metrics(),
        claims=[CLAIMS] if CLAIMS else [],
    output:
        readme=f"{REPORT_DIR}/README.md",
        md=report(
            f"{REPORT_DIR}/tables/main.md",
            caption="../report/table.rst",
            category="Tables",
        ),
        other=[
            f"{REPORT_DIR}/tables/{t}.{x}"
            for t in TABLES
            for x in ("md", "tex", "csv")
            if (t, x) != ("main", "md")
        ],
        figures=[
            report(
                f"{REPORT_DIR}/figures/{f}.png",
                caption=f"../report/{f}.rst",
                category="Figures",
            )
            for f in FIGURES
        ],
    log:
        f"{LOGS}/report.log",
    conda:
        "../../environment.yml"
    params:
        claims=f"--claims {CLAIMS}" if CLAIMS else "",
        out=lambda wc, output: os.path.dirname(output.readme),
    shell:
        "passprune report --summary {input.summary} --out {params.out} {params.claims} --metrics {input.metrics}"
        " > {log} 2>&1"
