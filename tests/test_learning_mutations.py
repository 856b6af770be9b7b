"""The mutations that show the learning test can fail (scripts/learning_mutations.py) must still
apply to the code as it is: each is a text edit, and a refactoring silently moves its target."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import load_script

REPO = Path(__file__).resolve().parents[1]
learning_mutations = load_script("learning_mutations")


@pytest.mark.parametrize("name", sorted(learning_mutations.MUTATIONS))
def test_every_mutation_still_finds_its_one_target(name, tmp_path):
    for rel, old, _ in learning_mutations.MUTATIONS[name]:
        assert (REPO / rel).read_text().count(old) == 1, f"{name}: {rel} no longer holds its target once"
    # and the mutated copy still imports (the edit is valid Python)
    for rel, _, _ in learning_mutations.MUTATIONS[name]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text((REPO / rel).read_text())
    learning_mutations.mutate(tmp_path, learning_mutations.MUTATIONS[name])
    for rel, _, _ in learning_mutations.MUTATIONS[name]:
        compile((tmp_path / rel).read_text(), rel, "exec")
