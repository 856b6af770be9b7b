"""The ``hero-bench`` command line.

Each subcommand lives in ``hero_bench/commands/<name>.py`` and exposes ``HELP`` (one line),
``DESCRIPTION`` (shown by ``hero-bench CMD --help``), ``add_arguments(parser)`` and ``run(args) -> int``.
Command modules import heavy libraries (torch, diffusers) inside ``run`` so ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from hero_bench.errors import HeroBenchError

# command name -> module under hero_bench.commands, in the order --help lists them
COMMANDS = {
    "sample": "sample",
    "build-tiny": "build_tiny",
    "pretrain-toy": "pretrain_toy",
    "base-rates": "base_rates",
    "tasks": "tasks",
    "train": "train",
    "evaluate": "evaluate",
    "gather": "gather",
    "verify": "verify",
    "report": "report",
    "compare": "compare",
    "sweep-table": "sweep_table",
    "noise-influence": "noise_influence",
    "regime-comparison": "regime_comparison",
    "agreement": "agreement",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hero-bench",
        description=(
            "Benchmark human-feedback-efficient finetuning of text-to-image diffusion models "
            "(HERO vs DDPO vs D3PO) with scripted oracles standing in for human evaluators. "
            "Run `hero-bench COMMAND --help` for the options of one command."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module_name in COMMANDS.items():
        try:
            module = importlib.import_module(f"hero_bench.commands.{module_name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"hero_bench.commands.{module_name}":
                raise
            continue  # command not built yet
        p = sub.add_parser(
            name,
            help=module.HELP,
            description=getattr(module, "DESCRIPTION", module.HELP),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except HeroBenchError as exc:
        # expected user-facing failures: one clear line, no traceback
        print(f"hero-bench {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"hero-bench {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
