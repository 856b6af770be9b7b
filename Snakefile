# hero-bench: HERO vs DDPO vs D3PO with scripted oracles, as feedback-efficiency tables.
#
#   snakemake --cores N                                              # toy tier (default config)
#   snakemake --cores 2 --configfile workflows/config/smoke.yaml     # CI smoke tier
#   snakemake --profile workflows/profiles/slurm --configfile workflows/config/paper.yaml
#   snakemake --report results/report.html                           # after a run
#
# Config keys: workflows/config/README.md. Rules: workflows/rules/*.smk.

import os

from snakemake.utils import min_version

min_version("9.0")


# the default config only when no --configfile is given: Snakemake merges --configfile into the
# `configfile:` one key by key, so keys only the default has (e.g. its `set:`) would leak into
# every other config. Its path is taken beside this Snakefile, so `--directory` elsewhere finds it.
if not workflow.overwrite_configfiles:

    configfile: os.path.join(workflow.basedir, "workflows/config/toy.yaml")


# helper functions only; nothing in it reads the config before it is validated below
include: "workflows/rules/common.smk"


validate_config(normalize_config(config), CONFIG_SCHEMA)
check_config(config)


report: "workflows/report/workflow.rst"


include: "workflows/rules/train.smk"
include: "workflows/rules/report.smk"
include: "workflows/rules/tune.smk"


rule all:
    input:
        final_outputs(),
    default_target: True
