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


rule noise_influence:
    """ICC(1) of success over initial noises of one task in one named regime (regime_comparison)."""
    input:
        backbone=train_backbone_input,
    output:
        "results/tune/{tier}/noise_influence/{task}_{regime}.json",
    wildcard_constraints:
        # task names take underscores, regime names do not: the last "_" splits the file name
        task="[a-z][a-z0-9_]*",
        regime="[a-z][a-z0-9-]*",
    log:
        "results/logs/noise_influence/{tier}/{task}_{regime}.log",
    params:
        noises=lambda wildcards: config["regime_comparison"]["noises"],
        repeats=lambda wildcards: config["regime_comparison"]["repeats"],
        device=config["device"],
        backbone=train_backbone_arg,
        launcher=train_launcher,
    threads: 1
    resources:
        **train_resources(),
    conda:
        "../envs/hero-bench.yaml"
    shell:
        "{params.launcher} timeout -k 30 {resources.runtime}m "
        "hero-bench noise-influence {params.backbone} --tier {wildcards.tier:q} --task {wildcards.task:q} --regime {wildcards.regime:q} "
        "--noises {params.noises} --repeats {params.repeats} --seed 0 --device {params.device} --threads {threads} "
        "--json {output:q} > {log} 2>&1"


rule evaluate_method_noise:
    """A HERO sweep run's final model from N(0, I) and from its own pi_HERO (regime_comparison)."""
    input:
        done="results/tune/{tier}/{task}/hero/{variant}/seed{seed}/DONE.json",
    output:
        "results/tune/{tier}/{task}/hero/{variant}/seed{seed}/eval_method_noise.csv",
    log:
        "results/logs/evaluate_method_noise/{tier}/{task}/hero/{variant}/seed{seed}.log",
    params:
        launcher=train_launcher,
        run_dir=run_dir_of_done,
    threads: train_threads()
    resources:
        **train_resources(),
    conda:
        "../envs/hero-bench.yaml"
    shell:
        "OMP_NUM_THREADS={threads} MKL_NUM_THREADS={threads} TQDM_DISABLE=1 "
        "{params.launcher} timeout --verbose -k 60 {resources.runtime}m "
        "hero-bench evaluate {params.run_dir:q} --method-noise --out {output:q} > {log} 2>&1"


rule regime_comparison:
    """Where HERO wins: HERO against DDPO and D3PO at equal feedback in each regime, against its ICC."""
    input:
        runs=sweep_eval_csvs(),
        icc=noise_influence_jsons() if config.get("regime_comparison") else [],
        method_noise=method_noise_csvs() if config.get("regime_comparison") else [],
    output:
        table=report(
            "results/tune/regime_comparison.md",
            caption="../report/regime_comparison.rst",
            category="Regimes",
            labels={"item": "table"},
        ),
        figure=report(
            "results/tune/hero_gain_vs_icc.png",
            caption="../report/regime_comparison.rst",
            category="Regimes",
            labels={"item": "figure"},
        ),
        csv="results/tune/regime_comparison.csv",
        ratio="results/tune/regime_ratio.csv",
        gains="results/tune/regime_gains.csv",
        # with regime_comparison.person: the imperfect person's table and figure
        **person_outputs(),
    log:
        "results/logs/regime_comparison.log",
    params:
        args=lambda wildcards: regime_comparison_args(),
    threads: 1
    resources:
        **small_resources(),
    conda:
        "../envs/hero-bench.yaml"
    shell:
        "timeout -k 30 {resources.runtime}m "
        "hero-bench regime-comparison {params.args} --icc {input.icc} --method-noise {input.method_noise} "
        "--out-dir results/tune {input.runs} > {log} 2>&1"
