# The report's files (passprune.study.targets); a claims file adds a table and a figure.
CLAIMS = STUDY.claims
FIGURES = S.figures(STUDY)
TABLES = S.tables(STUDY)
REPORT_FILES = S.report_files(STUDY)
ALL_METRICS = S.all_metrics(
    STUDY
)  # every metrics.json, in the order of the summary's rows
# ... and the dense models' convergence twins (pretrain.convergence_epochs), which only the report reads
REPORT_METRICS = S.report_metrics(STUDY)


rule aggregate:
    """One tidy row per finished run, built only from the metrics.json files."""
    input:
        ALL_METRICS,
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
        metrics=REPORT_METRICS,
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
