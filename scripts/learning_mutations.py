"""Show that the learning regression test can fail: run it against deliberately broken copies.

Each mutation is a one-line source edit of a scratch copy of the repository (the working tree is
never touched); the learning test (`pytest -m learning`, tests/test_learning.py) then runs with
that copy first on PYTHONPATH. A mutation is *caught* when the test fails.

    python scripts/learning_mutations.py                 # all mutations, one after the other
    python scripts/learning_mutations.py sign-flip       # one of them

Mutations:
  sign-flip        PPO advantages negated (HERO, DDPO) and the preferred image of every D3PO pair
                   swapped: every method is pushed away from what the evaluator liked
  shuffle-labels   the evaluator's verdicts permuted across the images of each batch (labels no
                   longer belong to their images)
  skip-step        the optimizer step of every PPO/DPO update skipped (gradients computed, LoRA
                   weights never change)

Each run takes as long as the learning test itself (about 10 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# name -> [(file, old text, new text), ...]: each old text must occur exactly once
MUTATIONS: dict[str, list[tuple[str, str, str]]] = {
    "sign-flip": [
        ("hero_bench/algorithms/kernels.py",
         "    ratio = _ratio(log_prob - old_log_prob)\n",
         "    ratio = _ratio(log_prob - old_log_prob)\n    advantages = -advantages  # MUTATION\n"),
        ("hero_bench/algorithms/kernels.py",
         "signs = torch.tensor([1.0, -1.0], device=device)",
         "signs = torch.tensor([-1.0, 1.0], device=device)"),
    ],
    "shuffle-labels": [
        ("hero_bench/oracle_calls.py",
         "    return success, score\n",
         "    perm = np.random.default_rng(n).permutation(n)  # MUTATION\n"
         "    return success[perm], score[perm]\n"),
    ],
    "skip-step": [
        ("hero_bench/algorithms/kernels.py",
         "    if torch.isfinite(grad_norm):\n        optimizer.step()\n",
         "    if torch.isfinite(grad_norm):\n        pass  # MUTATION\n"),
    ],
}


def mutate(copy: Path, edits: list[tuple[str, str, str]]) -> None:
    for rel, old, new in edits:
        path = copy / rel
        text = path.read_text()
        if text.count(old) != 1:
            sys.exit(f"mutation no longer applies: {rel} holds the text to replace {text.count(old)} times")
        path.write_text(text.replace(old, new))


def run(name: str) -> bool:
    """True when the learning test fails on the mutated copy (the mutation is caught)."""
    with tempfile.TemporaryDirectory(prefix=f"hero-mutant-{name}-") as tmp:
        copy = Path(tmp) / "repo"
        shutil.copytree(REPO, copy, ignore=shutil.ignore_patterns(".venv", ".git", "results", ".snakemake",
                                                                    "__pycache__", "*.egg-info"))
        mutate(copy, MUTATIONS[name])
        env = {**os.environ, "PYTHONPATH": str(copy)}
        print(f"== {name}: pytest -m learning against the mutated copy", flush=True)
        proc = subprocess.run([sys.executable, "-m", "pytest", "-m", "learning", "-s", "-q", "-p", "no:cacheprovider",
                               str(copy / "tests" / "test_learning.py")], cwd=copy, env=env)
        caught = proc.returncode != 0
        print(f"== {name}: {'CAUGHT (the learning test failed)' if caught else 'NOT CAUGHT (the test passed)'}",
              flush=True)
        return caught


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", metavar="MUTATION",
                        help=f"which mutations (default: all): {', '.join(MUTATIONS)}")
    names = parser.parse_args().names or list(MUTATIONS)
    unknown = [n for n in names if n not in MUTATIONS]
    if unknown:
        parser.error(f"unknown mutation {unknown[0]!r}; accepted: {', '.join(MUTATIONS)}")
    results = {name: run(name) for name in names}
    print("\n" + "\n".join(f"{name}: {'caught' if c else 'NOT caught'}" for name, c in results.items()))
    return 0 if all(results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
