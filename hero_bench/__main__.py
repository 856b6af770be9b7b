"""``python -m hero_bench`` is the same as the ``hero-bench`` console script (the workflow uses it so
that rules run with the interpreter Snakemake runs under, activated virtualenv or not)."""

import sys

from hero_bench.cli import main

sys.exit(main())
