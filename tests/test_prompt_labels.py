"""scripts/prompt_labels.py: a finished run's labels split by the training prompt each image had."""

from __future__ import annotations

import dataclasses
import json

import pandas as pd
import pytest

from conftest import finished_micro_run, load_script
from hero_bench import tasks as registry
from hero_bench.algorithms.base import Method
from hero_bench.run_records import recorded_task_version
from hero_bench.tasks import get_task


@pytest.mark.parametrize("method, budget", [("hero", 8), ("d3po", 19)])
def test_the_split_is_the_prompts_the_run_drew(tmp_path, tiny_backbone_dir, monkeypatch, method, budget):
    """The prompts recomputed from config.yaml are, image by image, those the run sampled with
    (smoke anomaly has two training prompts; D3PO draws one per group, and 19 labels leave a last
    round of 3 images in one smaller group)."""
    drawn: dict[int, list[str]] = {}
    sample_batch = Method.sample_batch

    def spy(self, epoch, prompts, z_T, groups=None):
        drawn[epoch] = [p.text for p in prompts]
        return sample_batch(self, epoch, prompts, z_T, groups=groups)

    monkeypatch.setattr(Method, "sample_batch", spy)
    run = finished_micro_run(tmp_path / "run", tiny_backbone_dir, method=method, budget=budget)
    result = load_script("prompt_labels").prompt_labels(run)
    assert len(result["prompts"]) == 2 and sorted(result["images"]) == sorted(drawn)
    for epoch, texts in drawn.items():
        assert [result["prompts"][i] for i in result["images"][epoch]] == texts
    assert len({t for texts in drawn.values() for t in texts}) == 2  # both prompts were drawn
    # every label is counted once, under its prompt
    n_labels = sum(n for counts in result["rounds"].values() for _, n in counts.values())
    assert n_labels == budget
    ledger = [json.loads(line) for line in open(run / "ledger.jsonl")]
    successes = sum(r["oracle_success"] for r in ledger if r.get("type") == "label")
    assert sum(ok for counts in result["rounds"].values() for ok, _ in counts.values()) == successes
    if method == "hero":  # the first round's best is one of its images, of a drawn prompt
        epoch, prompt = result["best"][0]
        assert epoch == 1 and result["prompts"][prompt] in drawn[1]


def test_a_run_without_a_ledger_or_labels_is_a_clear_error(tmp_path, tiny_backbone_dir):
    script = load_script("prompt_labels")
    run = finished_micro_run(tmp_path / "run", tiny_backbone_dir, method="ddpo", budget=4)
    (run / "ledger.jsonl").unlink()
    with pytest.raises(SystemExit, match="no ledger.jsonl"):
        script.prompt_labels(run)
    with pytest.raises(SystemExit):
        script.main([str(run), "--every", "0"])



def test_a_run_of_another_task_version_is_refused(tmp_path, tiny_backbone_dir, monkeypatch):
    """Its prompts would be recomputed from today's definition, which may hold other prompts."""
    script = load_script("prompt_labels")
    run = finished_micro_run(tmp_path / "run", tiny_backbone_dir, method="ddpo", budget=4)
    assert script.prompt_labels(run)["prompts"]  # made under today's version: split
    current = get_task("anomaly")
    monkeypatch.setitem(registry._REGISTRY, "anomaly", dataclasses.replace(current, version=current.version + 1))
    with pytest.raises(SystemExit, match=f"made under version {current.version} of task 'anomaly'; this code "
                                         f"defines version {current.version + 1}"):
        script.prompt_labels(run)
    assert recorded_task_version(run) == current.version
    # a run from before runs recorded the version (neither DONE.json nor eval.csv) counts as version 1's
    done = json.loads((run / "DONE.json").read_text())
    del done["task_version"]
    (run / "DONE.json").write_text(json.dumps(done))
    pd.read_csv(run / "eval.csv").drop(columns="task_version").to_csv(run / "eval.csv", index=False)
    assert recorded_task_version(run) == 1
