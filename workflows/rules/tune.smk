# Hyper-parameter sweeps (workflows/config/tune.yaml): every (task, method, variant, seed) is one
# `hero-bench train` job like rule train's, with the variant's `--set` items applied last; the
# table ranks each method's variants by the normalised area under their success curves.


rule tune_train:
    """One sweep run: rule train's job with the variant's settings (config key sweep.<method>.<variant>)."""
    input:
        backbone=train_backbone_input,
    output:
        eval_csv="results/tune/{tier}/{task}/{method}/{variant}/seed{seed}/eval.csv",
        done="results/tune/{tier}/{task}/{method}/{variant}/seed{seed}/DONE.json",
    log:
        "results/logs/tune/{tier}/{task}/{method}/{variant}/seed{seed}.log",
    params:
        launcher=train_launcher,
        run_dir=run_dir_of,
        budget=train_budget,
        device=config["device"],
        backbone=train_backbone_arg,
        overrides=train_overrides,
    priority: train_priority
    threads: train_threads()
    resources:
        **train_resources(),
    conda:
        "../envs/hero-bench.yaml"
    shell:
        TRAIN_SHELL


rule tune_table:
    input:
        sweep_eval_csvs(),
    output:
        table=report(
            "results/tune/sweep.md",
            caption="../report/sweep.rst",
            category="Sweep",
            labels={"item": "sweep table"},
        ),
        csv="results/tune/sweep.csv",
        selection="results/tune/sweep_selection.csv",
    log:
        "results/logs/tune_table.log",
    threads: 1
    resources:
        **small_resources(),
    conda:
        "../envs/hero-bench.yaml"
    shell:
        "timeout -k 30 {resources.runtime}m "
        "hero-bench sweep-table --out-dir results/tune {input} > {log} 2>&1"
