# Gather every run's eval.csv into one tidy table, then summarise it: IQM with stratified
# bootstrap CIs, success at fixed budgets, feedback-to-threshold, tables and figures.
# Report settings reach only the report rule, so changing them never reruns training.


rule gather:
    input:
        all_eval_csvs(),
    output:
        "results/summary/runs.csv",
    log:
        "results/logs/gather.log",
    threads: 1
    resources:
        **small_resources(),
    conda:
        "../envs/hero-bench.yaml"
    shell:
        "timeout -k 30 {resources.runtime}m "
        "hero-bench gather --out {output} {input} > {log} 2>&1"


rule report:
    input:
        "results/summary/runs.csv",
    output:
        summary="results/summary/summary.csv",
        table=report(
            "results/tables/summary.md",
            caption="../report/summary_table.rst",
            category="Feedback efficiency",
            labels={"item": "summary table"},
        ),
        curves=report(
            "results/figures/success_vs_feedback.png",
            caption="../report/success_vs_feedback.rst",
            category="Feedback efficiency",
            labels={"item": "success vs feedback"},
        ),
        final=report(
            "results/figures/final_success.png",
            caption="../report/final_success.rst",
            category="Feedback efficiency",
            labels={"item": "final success"},
        ),
    log:
        "results/logs/report.log",
    params:
        out_dir=report_out_dir,
        budgets=report_budgets(),
        threshold=config["report"]["threshold"],
        gain=config["report"]["gain"],
        reps=config["report"]["bootstrap_reps"],
        seed=config["report"]["bootstrap_seed"],
    threads: 1
    resources:
        **small_resources(),
    conda:
        "../envs/hero-bench.yaml"
    shell:
        "timeout -k 30 {resources.runtime}m "
        "hero-bench report --runs {input} --out-dir {params.out_dir} "
        "--budgets {params.budgets} --threshold {params.threshold} --gain {params.gain} "
        "--reps {params.reps} --seed {params.seed} > {log} 2>&1"


# Reproduction check: the fresh summary against the published one (config key `published`).
# --exit-zero: a cell outside its interval is the verdict this rule records, not a failed job.
rule compare:
    input:
        summary="results/summary/summary.csv",
        runs="results/summary/runs.csv",
        published=published_summary() or [],
    output:
        table=report(
            "results/tables/reproduction.md",
            caption="../report/reproduction.rst",
            category="Reproduction",
            labels={"item": "inside the published CIs?"},
        ),
        cells="results/summary/reproduction.csv",
    log:
        "results/logs/compare.log",
    threads: 1
    resources:
        **small_resources(),
    conda:
        "../envs/hero-bench.yaml"
    shell:
        "timeout -k 30 {resources.runtime}m "
        "hero-bench compare {input.summary} {input.published} --out {output.table} "
        "--csv {output.cells} --exit-zero > {log} 2>&1"
