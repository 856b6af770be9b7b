# Backbone and training rules. Every run is one job: `hero-bench train` writes its run folder
# (checkpoint, ledger, adapters, eval.csv, DONE.json). Only eval.csv and DONE.json are declared
# outputs: the run folder itself must survive a killed job so the rerun resumes from its
# checkpoint (rerun-incomplete) instead of asking the evaluator again. With train_prompt_eval,
# every finished run is also re-evaluated on its task's training prompts (eval_train.csv).


wildcard_constraints:
    tier=config["tier"],
    task="[a-z][a-z0-9_]*",
    method=method_wildcard(),
    seed="[0-9]+",
    variant="[A-Za-z0-9_.+-]+",


rule build_tiny_backbone:
    """The smoke tier's random tiny SD-architecture backbone (diffusers layout)."""
    output:
        directory(TINY_BACKBONE),
    log:
        "results/logs/build_tiny_backbone.log",
    params:
        seed=TINY_BACKBONE_SEED,
    threads: 1
    resources:
        **small_resources(),
    conda:
        "../envs/hero-bench.yaml"
    shell:
        "timeout -k 30 {resources.runtime}m "
        "hero-bench build-tiny --out {output} --seed {params.seed} > {log} 2>&1"


rule train:
    """Finetune (or, for method base, only evaluate) one (task, method, seed) run.

    An existing run folder is resumed when its config.yaml equals the config this job resolves;
    when the settings changed, `hero-bench train --replace-stale` moves the old folder aside to
    RUN_DIR.replaced-<time> (nothing is deleted) and the run starts afresh.
    """
    input:
        backbone=train_backbone_input,
    output:
        eval_csv="results/runs/{tier}/{task}/{method}/seed{seed}/eval.csv",
        done="results/runs/{tier}/{task}/{method}/seed{seed}/DONE.json",
    log:
        "results/logs/train/{tier}/{task}/{method}/seed{seed}.log",
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


rule evaluate_train_prompts:
    """A finished run's last adapter on the task's training prompts (config key train_prompt_eval).

    `hero-bench evaluate --prompts train --epochs last` with the run's own evaluation settings
    (its eval noise, images and noise-free oracle): one row, in RUN_DIR/eval_train.csv.
    """
    input:
        done="results/runs/{tier}/{task}/{method}/seed{seed}/DONE.json",
    output:
        "results/runs/{tier}/{task}/{method}/seed{seed}/eval_train.csv",
    log:
        "results/logs/evaluate_train_prompts/{tier}/{task}/{method}/seed{seed}.log",
    params:
        launcher=train_launcher,
        run_dir=run_dir_of_done,
    threads: train_threads()
    resources:
        **train_resources(),
    conda:
        "../envs/hero-bench.yaml"
    shell:
        "OMP_NUM_THREADS={threads} MKL_NUM_THREADS={threads} "
        "{params.launcher} timeout --verbose -k 60 {resources.runtime}m "
        "hero-bench evaluate {params.run_dir:q} --prompts train --epochs last --out {output:q} > {log} 2>&1"
