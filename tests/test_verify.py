"""Integrity of a run folder (hero_bench.integrity): `hero-bench verify`, the checks of a resume, and
gather's refusal, on a tiny smoke run tampered with in every way the checks are meant to catch.

Two tiny hero runs are trained once: one finished, one crashed after checkpointing epoch 2 (its
tables written, epoch 3 sampled but not labelled).  Each test tampers with a copy and checks that
verify reports the problem, that gather refuses the run naming it, and (crashed copy) that resuming
refuses it, each with its message; a torn last ledger line, by contrast, still resumes.
"""

from __future__ import annotations

import io
import json
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from hero_bench import integrity, report, run_config
from hero_bench.cli import main
from hero_bench.errors import HeroBenchError
from hero_bench.integrity import IntegrityError, verify_run
from hero_bench.ledger import GENESIS, FeedbackLedger, chain_hash, image_id
from hero_bench.presets import build_run_config
from hero_bench.provenance import run_config_hash
from hero_bench.results import LATER_COLUMNS
from hero_bench.run_hooks import CrashAt, InjectedCrash
from hero_bench.runner import train

pytestmark = pytest.mark.usefixtures("one_torch_thread")

REPO = Path(__file__).resolve().parent.parent
MICRO = ["sampler.steps=2", "eval.n_images=4", "eval.batch_size=4", "hero.images_per_epoch=4",
         "hero.triplet_passes=2", "hero.ppo.timesteps_per_sample=1", "hero.ppo.train_batch_size=2",
         "hero.ppo.grad_accum_steps=1", "eval.every_epochs=2"]  # evaluated epochs: 0, 2 and the last (3)
BUDGET = 12  # three epochs of 4 labels and a best pick: 5 ledger records per epoch
ENTRIES = {"crashed": 10, "finished": 15}  # ledger records the checkpoint / DONE.json recorded


def config(backbone_dir):
    return build_run_config("smoke", "anomaly", "hero", seed=5, budget=BUDGET, backbone=str(backbone_dir),
                            overrides=MICRO)


@pytest.fixture(scope="module")
def templates(tmp_path_factory, tiny_backbone_dir, one_torch_thread):
    """{"finished": a finished run, "crashed": one killed after epoch 2's checkpoint and tables}."""
    root = tmp_path_factory.mktemp("verify")
    train(config(tiny_backbone_dir), root / "finished", progress=False)
    with pytest.raises(InjectedCrash):
        train(config(tiny_backbone_dir), root / "crashed", progress=False, hooks=[CrashAt("epoch3.after_sampling")])
    return {"finished": root / "finished", "crashed": root / "crashed"}


@pytest.fixture
def copy(templates, tmp_path):
    """A fresh copy of a template run folder, to tamper with (``name``: for a second copy)."""
    def make(state: str, name: str | None = None) -> Path:
        return Path(shutil.copytree(templates[state], tmp_path / (name or state)))
    return make


# ------------------------------------------------------------------------------------ tampering
def ledger_rows(run: Path) -> list[bytes]:
    return (run / "ledger.jsonl").read_bytes().splitlines(keepends=True)


def write_rows(run: Path, rows: list[bytes]) -> None:
    (run / "ledger.jsonl").write_bytes(b"".join(rows))


def dump(rec: dict) -> bytes:
    return (json.dumps(rec, sort_keys=True, separators=(",", ":")) + "\n").encode()


def flipped_label(row: bytes) -> dict:
    rec = json.loads(row)
    assert rec["type"] == "label"
    rec["value"] = not rec["value"]
    return rec


def edit_label(run):
    rows = ledger_rows(run)
    rows[2] = dump(flipped_label(rows[2]))
    write_rows(run, rows)


def swap_records(run):
    rows = ledger_rows(run)
    rows[1], rows[2] = rows[2], rows[1]
    write_rows(run, rows)


def delete_middle(run):
    rows = ledger_rows(run)
    write_rows(run, rows[:3] + rows[4:])


def truncate_tail(run):
    write_rows(run, ledger_rows(run)[:5])  # epoch 1's transaction only: a cut at a record boundary


def rechain(run):
    """Edit a label and recompute every hash after it: a valid chain, but not the recorded head."""
    recs = [json.loads(r) for r in ledger_rows(run)]
    recs[2] = flipped_label(dump(recs[2]))
    previous = GENESIS
    for rec in recs:
        rec["hash"] = previous = chain_hash(previous, rec)
    write_rows(run, [dump(r) for r in recs])


def flip_adapter_byte(run):
    path = run / "lora" / "epoch_0002.safetensors"
    data = bytearray(path.read_bytes())
    data[-100] ^= 0x01  # inside the tensor data, so the file still loads
    path.write_bytes(bytes(data))


def edit_config(run):
    path = run / "config.yaml"
    text = path.read_text()
    assert f"budget: {BUDGET}\n" in text
    path.write_text(text.replace(f"budget: {BUDGET}\n", "budget: 16\n"))


def append_beyond_budget(run):
    """Labels appended with a valid chain (as a tool that knows the format would) until the ledger
    holds one label more than the budget."""
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    led = FeedbackLedger(run / "ledger.jsonl", budget=10 * BUDGET, run_id=integrity.run_id_of(cfg))
    n = BUDGET + 1 - led.feedback_used
    led.record_labels(9, [image_id(9, i) for i in range(n)], "hero_good", [True] * n, 0)


def edit_eval_count(run):
    path = run / "eval.csv"
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    assert df.loc[1, "epoch"] == "2" and df.loc[1, "feedback_used"] == "8"
    df.loc[1, "feedback_used"] = "9"
    df.to_csv(path, index=False)


def flip_checkpoint_byte(run):
    path = run / "checkpoint.pt"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


HASH = "[0-9a-f]+"
# tamper -> (function, expected problem: a regex with {src}, what recorded the state ("checkpoint.pt"
# or "DONE.json" for verify and gather, "checkpoint <path>" on resume), and {n}, its ledger length;
# the message on resume when it differs; None = not a resume's business)
TAMPERS = {
    "edit-label": (edit_label, r"ledger \S+ledger\.jsonl line 3: hash chain broken", ...),
    "swap-records": (swap_records, r"ledger \S+ledger\.jsonl line 2: hash chain broken", ...),
    "delete-middle": (delete_middle, r"ledger \S+ledger\.jsonl line 4: hash chain broken", ...),
    "truncate-tail": (truncate_tail, r"ledger \S+ledger\.jsonl has 5 records but {src} was written after {n}: "
                                     r"\d+ were cut off its end", ...),
    "rechain": (rechain, rf"ledger \S+ledger\.jsonl: its first {{n}} records hash to {HASH}, not to the head {HASH} "
                         r"{src} recorded", ...),
    "adapter-byte": (flip_adapter_byte, rf"lora/epoch_0002\.safetensors has sha256 {HASH} but {{src}} recorded {HASH} "
                                        r"when it was saved: the file was modified", ...),
    "edit-config": (edit_config, rf"eval\.csv line 2: config_hash {HASH} but config\.yaml hashes to {HASH}",
                    r"already holds a run with a different config \(differs in: budget\)"),
    "beyond-budget": (append_beyond_budget, r"ledger \S+ledger\.jsonl holds 13 labels, more than the budget of 12 "
                                            r"\(line \d+ is label 13\)", ...),
    "eval-count": (edit_eval_count, r"eval\.csv line 3 \(epoch 2\): feedback_used 9 but ledger\.jsonl holds 8 labels "
                                    "up to that epoch", None),  # a resume rewrites eval.csv from its checkpoint
}
SOURCE = {"crashed": "checkpoint.pt", "finished": "DONE.json"}


def expected(tamper: str, state: str, on_resume: bool = False) -> str:
    _, message, resume_message = TAMPERS[tamper]
    if on_resume and resume_message is not ...:
        return resume_message
    src = r"checkpoint \S+checkpoint\.pt" if on_resume else re.escape(SOURCE[state])
    return message.format(src=src, n=ENTRIES[state])


def tampered(copy, tamper, state):
    run = copy(state)
    TAMPERS[tamper][0](run)
    return run


# ------------------------------------------------------------------------------------ clean runs
def test_a_clean_run_verifies(templates, capsys):
    finished = verify_run(templates["finished"])
    assert finished.ok and finished.warnings == [] and finished.summary().endswith(": OK")
    done = json.loads((templates["finished"] / "DONE.json").read_text())["integrity"]
    assert done["ledger"]["entries"] == ENTRIES["finished"] and len(done["ledger"]["head"]) == 64
    assert sorted(done["adapters"]) == [f"lora/epoch_000{e}.safetensors" for e in (0, 2, 3)]
    crashed = verify_run(templates["crashed"])
    assert crashed.ok and crashed.warnings == ["the run has not finished (no DONE.json): checked against its checkpoint"]
    ckpt = torch.load(templates["crashed"] / "checkpoint.pt", weights_only=True)
    assert (ckpt["epoch"], ckpt["ledger"]["entries"], sorted(ckpt["adapters"])) == (
        2, ENTRIES["crashed"], ["lora/epoch_0000.safetensors", "lora/epoch_0002.safetensors"])
    assert main(["verify", str(templates["finished"]), str(templates["crashed"])]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[-1] == "verified 2 runs: 2 OK, 0 FAILED"
    assert len(report.gather([templates["finished"] / "eval.csv"])) == 3


# ------------------------------------------------------------------------------------ tampering
@pytest.mark.parametrize("state", ["crashed", "finished"])
@pytest.mark.parametrize("tamper", list(TAMPERS))
def test_verify_and_gather_detect_tampering(copy, tamper, state, capsys):
    run = tampered(copy, tamper, state)
    result = verify_run(run)
    assert not result.ok
    want = expected(tamper, state)
    assert re.search(want, result.problems[0]), (want, result.problems)
    with pytest.raises(IntegrityError, match=rf"^run {re.escape(str(run))} fails verification: {want}"):
        report.gather([run / "eval.csv"])
    assert main(["verify", str(run)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert re.match(rf"{re.escape(str(run))}: FAILED \(\d+ problems?, \d+ warnings?\)$", out[0])
    assert re.search(want, out[1]) and out[1].startswith("  problem: ")
    assert out[-1] == "verified 1 run: 0 OK, 1 FAILED"


@pytest.mark.parametrize("tamper", [t for t, (_, _, on_resume) in TAMPERS.items() if on_resume is not None])
def test_resume_refuses_tampering(copy, tamper, tiny_backbone_dir):
    run = tampered(copy, tamper, "crashed")
    with pytest.raises(HeroBenchError, match=expected(tamper, "crashed", on_resume=True)) as info:
        train(config(tiny_backbone_dir), run, progress=False)
    assert "\n" not in str(info.value)
    assert not (run / "DONE.json").exists()


def test_a_modified_checkpoint_of_a_finished_run_is_detected(copy):
    run = copy("finished")
    flip_checkpoint_byte(run)
    [problem] = verify_run(run).problems
    assert re.match(rf"checkpoint\.pt has sha256 {HASH} but DONE\.json recorded {HASH} when the run finished", problem)
    with pytest.raises(IntegrityError, match="checkpoint.pt has sha256"):
        report.gather([run / "eval.csv"])


def test_gather_cli_refusal_is_one_line(copy, tmp_path, capsys):
    run = tampered(copy, "edit-label", "finished")
    assert main(["gather", "--out", str(tmp_path / "runs.csv"), str(run / "eval.csv")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith(f"hero-bench gather: error: run {run} fails verification: ledger ")
    assert err.endswith("gather accepts verified runs only") and not (tmp_path / "runs.csv").exists()


# ------------------------------------------------------------------------------ crashes and old runs
def test_a_torn_last_line_still_resumes(copy, templates, tiny_backbone_dir):
    run = copy("crashed")
    with open(run / "ledger.jsonl", "ab") as fh:
        fh.write(ledger_rows(run)[0][:60])  # a crash in the middle of writing epoch 3's labels
    result = verify_run(run)
    assert result.ok and "ledger.jsonl ends in a torn write of 60 bytes" in " ".join(result.warnings)
    train(config(tiny_backbone_dir), run, progress=False)
    assert verify_run(run).warnings == [] and verify_run(run).ok
    for name in ("eval.csv", "ledger.jsonl", "lora/epoch_0003.safetensors"):
        assert (run / name).read_bytes() == (templates["finished"] / name).read_bytes(), name


def strip_hashes(run):
    write_rows(run, [dump({k: v for k, v in json.loads(r).items() if k != "hash"}) for r in ledger_rows(run)])


def test_a_ledger_stripped_of_its_chain_is_detected(copy):
    # a ledger without hashes is accepted only where nothing recorded a chain
    for state in ("finished", "crashed"):
        run = copy(state)
        strip_hashes(run)
        assert re.search(rf"has no hash chain but {SOURCE[state]} recorded its head", verify_run(run).problems[0])


def test_a_run_from_before_ledger_format_2_verifies_with_warnings_and_resumes(copy, templates, tiny_backbone_dir):
    """Pre-chain runs (ledger without hashes, checkpoint and DONE.json without the integrity
    records) are said, not failed, and a pre-chain run in progress resumes without a chain."""
    finished = copy("finished")
    strip_hashes(finished)
    done = json.loads((finished / "DONE.json").read_text())
    del done["integrity"]
    (finished / "DONE.json").write_text(json.dumps(done))
    result = verify_run(finished)
    assert result.ok and result.warnings == [
        "ledger.jsonl has no hash chain (written before ledger format 2): edits to it cannot be detected",
        "DONE.json records no ledger head or checksums (written before ledger format 2): a cut-off ledger tail, "
        "adapters and checkpoint are not checked against it",
    ]

    crashed = copy("crashed")
    strip_hashes(crashed)
    ckpt = torch.load(crashed / "checkpoint.pt", weights_only=True)
    ckpt["ledger"] = {k: ckpt["ledger"][k] for k in ("feedback_used", "queries")}
    del ckpt["adapters"]
    torch.save(ckpt, crashed / "checkpoint.pt")
    assert verify_run(crashed).ok
    train(config(tiny_backbone_dir), crashed, progress=False)
    assert all("hash" not in json.loads(r) for r in ledger_rows(crashed))  # continued without a chain
    assert (crashed / "eval.csv").read_bytes() == (templates["finished"] / "eval.csv").read_bytes()
    result = verify_run(crashed)
    assert result.ok and result.warnings == [
        "ledger.jsonl has no hash chain (written before ledger format 2): edits to it cannot be detected"]


def test_published_runs_verify_with_warnings_and_gather_as_published(caplog):
    runs = sorted(p.parent for p in (REPO / "results" / "published").rglob("DONE.json"))
    assert runs
    for run in runs:
        result = verify_run(run)
        assert result.ok, result.problems
        # a published copy keeps no ledger, checkpoint or adapters; older ones also predate format 2
        assert any(w.startswith("not kept:") or "written before ledger format 2" in w for w in result.warnings)
    toy = sorted((REPO / "results" / "published" / "toy" / "runs").rglob("eval.csv"))
    with caplog.at_level("WARNING", logger="hero_bench.runs_table"):
        gathered = report.gather(toy)
    published = pd.read_csv(REPO / "results" / "published" / "toy" / "summary" / "runs.csv")
    gathered = pd.read_csv(io.StringIO(gathered.to_csv(index=False)))
    for column in LATER_COLUMNS:  # a publication older than the column: its runs leave it empty
        if column not in published.columns:
            assert gathered.pop(column).isna().all()
    pd.testing.assert_frame_equal(gathered, published)
    assert "runs verified with a warning: not kept:" in caplog.text  # and not refused


def test_verify_reads_no_run_code_and_agrees_with_it(templates):
    """integrity keeps its own copy of the run folder's names and of RunConfig.run_id (it must not
    import run_config, which imports torch): they agree."""
    assert (integrity.CONFIG_FILE, integrity.LEDGER_FILE, integrity.CHECKPOINT_FILE, integrity.EVAL_FILE,
            integrity.TRAIN_LOG_FILE, integrity.DONE_FILE) == (
        run_config.CONFIG_FILE, run_config.LEDGER_FILE, run_config.CHECKPOINT_FILE, run_config.EVAL_FILE,
        run_config.TRAIN_LOG_FILE, run_config.DONE_FILE)
    cfg = run_config.load_config_file(templates["finished"] / "config.yaml")
    data = yaml.safe_load((templates["finished"] / "config.yaml").read_text())
    assert integrity.run_id_of(data) == cfg.run_id
    assert integrity.config_file_hash(data) == run_config_hash(cfg)


# ------------------------------------------------------------------------- checks without a tamper list
def test_records_appended_after_the_run_finished(copy):
    """A chained record appended within the budget: only DONE.json's length tells."""
    run = copy("finished")
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    FeedbackLedger(run / "ledger.jsonl", BUDGET, integrity.run_id_of(cfg)).record_query(9, "hero_best", "e0009", 0, 0)
    problems = verify_run(run).problems
    assert problems[0].endswith("has 16 records, 1 more than DONE.json recorded when the run finished: records were "
                                "appended afterwards")
    assert "DONE.json: queries 3 but ledger.jsonl holds 4" in problems


def test_an_adapter_file_nobody_recorded(copy):
    finished = copy("finished")
    shutil.copy(finished / "lora" / "epoch_0002.safetensors", finished / "lora" / "epoch_0001.safetensors")
    assert verify_run(finished).problems == [
        "lora/epoch_0001.safetensors is not among the adapters DONE.json recorded: it was added afterwards"]
    # in a run in progress, an adapter of the epoch after the checkpoint is a crash between the two
    crashed = copy("crashed")
    shutil.copy(crashed / "lora" / "epoch_0002.safetensors", crashed / "lora" / "epoch_0003.safetensors")
    result = verify_run(crashed)
    assert result.ok and "lora/epoch_0003.safetensors was saved after the last checkpoint" in " ".join(result.warnings)


def test_a_record_only_copy_is_checked_on_its_tables(copy):
    """A finished run kept without ledger, checkpoint and adapters (as results/published/ keeps
    them): a warning, and the tables are still checked against the budget and DONE.json."""
    run = copy("finished")
    for name in ("ledger.jsonl", "checkpoint.pt"):
        (run / name).unlink()
    shutil.rmtree(run / "lora")
    result = verify_run(run)
    assert result.ok and result.warnings == [
        "not kept: ledger.jsonl, checkpoint.pt, lora/ (a finished run copied without them, as results/published/ "
        "keeps its runs): what they hold is not checked"]
    df = pd.read_csv(run / "eval.csv", dtype=str, keep_default_na=False)
    df.loc[2, "feedback_used"] = "13"
    df.to_csv(run / "eval.csv", index=False)
    done = json.loads((run / "DONE.json").read_text())
    (run / "DONE.json").write_text(json.dumps({**done, "feedback_used": 11}))
    assert verify_run(run).problems == [
        "eval.csv line 4: feedback_used 13 exceeds the budget 12 of config.yaml",
        "DONE.json: feedback_used 11 but the last row of train_log.csv says 12",
    ]


def test_a_run_in_progress_without_its_checkpoint_or_ledger(copy):
    run = copy("crashed")
    (run / "ledger.jsonl").unlink()
    assert verify_run(run).problems == ["ledger.jsonl is missing but the run's records count 8 labels"]
    run = copy("crashed", "second")
    (run / "checkpoint.pt").unlink()
    assert verify_run(run).problems == [
        "checkpoint.pt is missing but ledger.jsonl exists: a run writes its checkpoint before it asks for any label"]
