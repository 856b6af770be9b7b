"""The run loop: presets and overrides, the CLI, budgets, the base method, determinism, re-evaluation."""

from __future__ import annotations

import csv
import json
import math
import shutil

import pytest
import torch
import yaml

from hero_bench.cli import main
from hero_bench.config import from_dict
from hero_bench.errors import ConfigError, UnknownTaskError
from hero_bench.presets import build_run_config
from hero_bench.results import EVAL_COLUMNS, TRANSFER_COLUMNS
from hero_bench.run_config import RunConfig
from hero_bench.runner import train
from hero_bench.tasks import list_tasks


pytestmark = pytest.mark.usefixtures("one_torch_thread")


# a HERO run small enough for a test: 4 images per epoch, 2 sampling steps, 4 eval images
MICRO = ["sampler.steps=2", "eval.n_images=4", "eval.batch_size=4", "hero.images_per_epoch=4",
         "hero.triplet_passes=2", "hero.ppo.timesteps_per_sample=1", "hero.ppo.train_batch_size=4"]


def micro(backbone_dir, method="hero", seed=0, budget=8, extra=()):
    return build_run_config("smoke", "anomaly", method, seed=seed, budget=budget, backbone=str(backbone_dir),
                            overrides=MICRO + list(extra))


def rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def hero_run(tmp_path_factory, tiny_backbone_dir):
    """One finished micro HERO run (shared by the tests that only read it)."""
    out = tmp_path_factory.mktemp("hero_run")
    train(micro(tiny_backbone_dir), out, progress=False)
    return out


# -- config ----------------------------------------------------------------------------------------


def test_presets_paper_values():
    hero = build_run_config("paper", "hand", "hero", device="cpu")
    assert hero.sampler.steps == 20 and hero.hero.images_per_epoch == 128 and hero.budget == 1152
    p = hero.hero.ppo
    assert (p.lr, p.train_batch_size, p.grad_accum_steps, p.clip_range, p.timesteps_per_sample) == (3e-4, 2, 4, 1e-4, 5)
    assert (hero.hero.embedding_lr, hero.hero.triplet_passes, hero.hero.embedding_dim, hero.hero.triplet_margin) == (
        1e-5, 500, 2048, 0.5)
    assert (hero.hero.best_ratio, hero.hero.noise_scale, hero.sampler.guidance_scale, hero.sampler.eta) == (0.5, 0.1, 5.0, 1.0)
    other = build_run_config("paper", "blue_rose", "hero", device="cpu")
    assert other.sampler.steps == 50 and other.hero.images_per_epoch == 64 and other.budget == 512
    d3po = build_run_config("paper", "hand", "d3po", device="cpu")
    assert (d3po.sampler.steps, d3po.d3po.lr, d3po.d3po.beta, d3po.d3po.clamp_eps, d3po.budget) == (20, 3e-5, 0.1, 0.1, 5000)
    ddpo = build_run_config("paper", "blue_rose", "ddpo", device="cpu")
    assert (ddpo.sampler.steps, ddpo.ddpo.images_per_epoch, ddpo.ddpo.ppo.lr, ddpo.ddpo.stat_min_count) == (50, 256, 3e-4, 16)


def test_toy_preset_sizes_and_portable_backbone():
    cfg = build_run_config("toy", "anomaly", "hero")
    assert cfg.hero.images_per_epoch == 32 and cfg.sampler.steps == 20 and cfg.budget == 512
    # the shipped model is named relative to the package: config.yaml and its hash do not depend
    # on where the checkout lives
    from pathlib import Path

    from hero_bench.diffusion.backbone import resolve_backbone

    assert cfg.backbone == "hero_bench:toyworld/pretrained/shapesworld"
    assert Path(resolve_backbone(cfg.backbone)).is_absolute()
    assert resolve_backbone("/some/folder") == "/some/folder"
    d3po = build_run_config("toy", "anomaly", "d3po").d3po
    assert d3po.group_size * d3po.groups_per_epoch == 35


def test_toy_preset_rounds_are_the_ones_its_learning_rates_were_calibrated_with():
    """The toy preset's learning rates are per round of the size the whole-curve sweep ran; a preset
    with another round size (it had 64 while every sweep ran 32) runs settings nobody calibrated."""
    from pathlib import Path

    sweep = yaml.safe_load((Path(__file__).resolve().parents[1] / "workflows" / "config" / "tune-curve.yaml").read_text())
    for method, sets in sweep["set"].items():
        assert build_run_config("toy", "anomaly", method, overrides=sets) == build_run_config("toy", "anomaly", method), (
            f"tune-curve.yaml trains {method} with {sets}, the toy preset otherwise")


def test_overrides_are_strict_and_typed():
    cfg = build_run_config("smoke", "anomaly", "hero", overrides=["hero.ppo.lr=1e-4", "sampler.steps=3",
                                                                   "evaluator.flip_prob=0.2"])
    assert (cfg.hero.ppo.lr, cfg.sampler.steps, cfg.evaluator.flip_prob) == (1e-4, 3, 0.2)
    assert cfg.hero.triplet_passes == 5  # untouched smoke preset values survive
    with pytest.raises(ConfigError, match=r"hero\.ppo\.lrr.*accepted keys under hero\.ppo: .*lr"):
        build_run_config("smoke", "anomaly", "hero", overrides=["hero.ppo.lrr=1"])
    with pytest.raises(ConfigError, match="sampler.steps"):
        build_run_config("smoke", "anomaly", "hero", overrides=["sampler.steps=many"])
    with pytest.raises(ConfigError, match="unknown method 'dpo'; accepted: hero, ddpo, d3po, base"):
        build_run_config("smoke", "anomaly", "dpo")
    with pytest.raises(ConfigError, match="unknown tier"):
        build_run_config("huge", "anomaly", "hero")
    with pytest.raises(ConfigError, match="reward_mode"):
        build_run_config("smoke", "anomaly", "hero", overrides=["hero.reward_mode=classifier"])


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert main(["train", "--tier", "smoke", "--method", "sgd", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "hero-bench train: error: unknown method 'sgd'; accepted: hero, ddpo, d3po, base"
    assert main(["train", "--tier", "smoke", "--set", "nope=1", "--out", str(tmp_path / "x")]) == 2
    assert "unknown key nope" in capsys.readouterr().err
    assert main(["evaluate", str(tmp_path / "missing")]) == 2
    assert "not a run directory" in capsys.readouterr().err


def test_unknown_task_and_tier_mismatch(tmp_path, tiny_backbone_dir):
    smoke_tasks = ", ".join(t.name for t in list_tasks("smoke"))  # and no task of another tier
    with pytest.raises(UnknownTaskError, match=f"unknown task 'juggling'; tier smoke runs: {smoke_tasks} "):
        train(build_run_config("smoke", "juggling", "hero", backbone=str(tiny_backbone_dir)), tmp_path / "a",
              progress=False)
    with pytest.raises(ConfigError, match=f"task 'hand' belongs to the paper tier; tier smoke runs: {smoke_tasks}$"):
        train(build_run_config("smoke", "hand", "hero", backbone=str(tiny_backbone_dir)), tmp_path / "b",
              progress=False)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_print_config_round_trips(capsys):
    assert main(["train", "--tier", "toy", "--method", "d3po", "--out", "unused", "--print-config",
                 "--set", "d3po.beta=0.2"]) == 0
    data = yaml.safe_load(capsys.readouterr().out)
    cfg = from_dict(RunConfig, data)
    assert cfg.d3po.beta == 0.2 and cfg.method == "d3po" and cfg.tier == "toy"


def test_train_help_documents_everything(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = capsys.readouterr().out
    for flag in ("--tier", "--task", "--method", "--seed", "--budget", "--out", "--backbone", "--device", "--dtype",
                 "--set", "hero", "ddpo", "d3po", "base", "Resume"):
        assert flag in text


# -- runs ------------------------------------------------------------------------------------------


def test_hero_run_outputs(hero_run):
    cfg = from_dict(RunConfig, yaml.safe_load((hero_run / "config.yaml").read_text()))
    assert cfg.method == "hero" and cfg.budget == 8
    evals = rows(hero_run / "eval.csv")
    assert list(evals[0]) == list(EVAL_COLUMNS)
    assert [(int(r["epoch"]), int(r["feedback_used"]), int(r["queries"]), int(r["images_generated"])) for r in evals] == [
        (0, 0, 0, 0), (1, 4, 1, 4), (2, 8, 2, 8)]
    assert {r["n_eval"] for r in evals} == {"4"} and {r["label_noise"] for r in evals} == {"0.0"}
    # transfer to the held-out prompts, next to the primary metric: as many images by default
    assert {r["transfer_n_eval"] for r in evals} == {"4"}
    assert all(0 <= float(r["transfer_success_rate"]) <= 1 and r["transfer_mean_score"] for r in evals)
    assert len({r["config_hash"] for r in evals}) == 1 and evals[0]["git_sha"]
    assert sorted(p.name for p in (hero_run / "lora").iterdir()) == [f"epoch_000{i}.safetensors" for i in range(3)]
    log = rows(hero_run / "train_log.csv")
    assert [int(r["epoch"]) for r in log] == [1, 2]
    for key in ("loss", "approx_kl", "clipfrac", "triplet_loss", "train_success", "reward_mean", "reward_auc",
                "reward_auc_prior", "sample_s"):
        assert key in log[0]
    assert log[0]["reward_auc_prior"] == "nan"  # no representation before the first round
    done = json.loads((hero_run / "DONE.json").read_text())
    assert done["feedback_used"] == 8 and done["epochs"] == 2
    assert done["final_success_rate"] == float(evals[-1]["success_rate"])
    assert done["final_transfer_success_rate"] == float(evals[-1]["transfer_success_rate"])


def test_same_seed_twice_is_bitwise_identical_and_seeds_differ(hero_run, tmp_path, tiny_backbone_dir):
    train(micro(tiny_backbone_dir), tmp_path / "again", progress=False)
    for name in ("eval.csv", "ledger.jsonl", "lora/epoch_0002.safetensors"):
        assert (hero_run / name).read_bytes() == (tmp_path / "again" / name).read_bytes(), name
    train(micro(tiny_backbone_dir, seed=1), tmp_path / "seed1", progress=False)
    assert (hero_run / "ledger.jsonl").read_bytes() != (tmp_path / "seed1" / "ledger.jsonl").read_bytes()
    # the eval noise does not depend on the training seed: the pretrained rows are equal (paired)
    assert rows(hero_run / "eval.csv")[0]["success_rate"] == rows(tmp_path / "seed1" / "eval.csv")[0]["success_rate"]
    assert rows(hero_run / "eval.csv")[0]["diversity"] == rows(tmp_path / "seed1" / "eval.csv")[0]["diversity"]


def test_finished_run_restarted_does_nothing(hero_run):
    before = {p: p.stat().st_mtime_ns for p in hero_run.rglob("*") if p.is_file()}
    assert train(micro_from(hero_run), hero_run, progress=False) is None
    assert before == {p: p.stat().st_mtime_ns for p in hero_run.rglob("*") if p.is_file()}


def micro_from(run_dir) -> RunConfig:
    return from_dict(RunConfig, yaml.safe_load((run_dir / "config.yaml").read_text()))


def test_a_different_config_in_the_same_directory_is_refused(hero_run, tiny_backbone_dir):
    with pytest.raises(ConfigError, match="differs in: budget"):
        train(micro(tiny_backbone_dir, budget=12), hero_run, progress=False)


def test_evaluate_command_recomputes_the_same_eval_csv(hero_run, tmp_path, capsys):
    out = tmp_path / "re.csv"
    assert main(["evaluate", str(hero_run), "--out", str(out), "--quiet"]) == 0
    assert out.read_bytes() == (hero_run / "eval.csv").read_bytes()
    assert main(["evaluate", str(hero_run), "--set", "hero.ppo.lr=1"]) == 2
    assert "only eval.* overrides" in capsys.readouterr().err


def test_evaluate_single_split_writes_its_own_file(hero_run, monkeypatch, capsys):
    import hero_bench.reevaluate as ev
    from hero_bench.report import ResultsFormatError, gather
    from hero_bench.tasks import get_task

    before = (hero_run / "eval.csv").read_bytes()
    evals = rows(hero_run / "eval.csv")
    seen = []
    real = ev.evaluate_prompts

    def spy(backbone, prompts, *args, **kwargs):
        seen.append(tuple(p.text for p in prompts))
        return real(backbone, prompts, *args, **kwargs)

    monkeypatch.setattr(ev, "evaluate_prompts", spy)
    assert main(["evaluate", str(hero_run), "--prompts", "train", "--quiet"]) == 0
    task = get_task(evals[0]["task"])
    assert seen and set(seen) == {tuple(p.text for p in task.train_prompts)}
    assert (hero_run / "eval.csv").read_bytes() == before  # eval.csv is left alone
    train_rows = rows(hero_run / "eval_train.csv")
    assert [r["epoch"] for r in train_rows] == [r["epoch"] for r in evals]
    assert {r["prompt_set"] for r in train_rows} == {"train"}
    # the training prompts ARE the primary evaluation: the same numbers, without the transfer ones
    for key in ("success_rate", "mean_score", "n_eval", "diversity"):
        assert [r[key] for r in train_rows] == [r[key] for r in evals]
    assert {r[c] for r in train_rows for c in TRANSFER_COLUMNS} == {""}
    # a single-split file cannot slip into the comparison
    with pytest.raises(ResultsFormatError, match="training prompts"):
        gather([hero_run / "eval_train.csv"])
    (hero_run / "eval_train.csv").unlink()
    # --prompts eval: the held-out prompts only, the transfer numbers in the success columns
    seen.clear()
    assert main(["evaluate", str(hero_run), "--prompts", "eval", "--quiet"]) == 0
    assert set(seen) == {tuple(p.text for p in task.eval_prompts)}
    held = rows(hero_run / "eval_heldout.csv")
    assert [(r["success_rate"], r["mean_score"], r["n_eval"]) for r in held] == [
        (r["transfer_success_rate"], r["transfer_mean_score"], r["transfer_n_eval"]) for r in evals]
    assert {r["prompt_set"] for r in held} == {"eval"}
    with pytest.raises(ResultsFormatError, match="held-out prompts"):
        gather([hero_run / "eval_heldout.csv"])
    (hero_run / "eval_heldout.csv").unlink()
    assert (hero_run / "eval.csv").read_bytes() == before
    # --epochs: only the chosen checkpoints, never as a partial rewrite of eval.csv
    last = rows(hero_run / "eval.csv")[-1]["epoch"]
    assert main(["evaluate", str(hero_run), "--prompts", "train", "--epochs", "0,last", "--quiet"]) == 0
    assert [r["epoch"] for r in rows(hero_run / "eval_train.csv")] == ["0", last]
    (hero_run / "eval_train.csv").unlink()
    assert main(["evaluate", str(hero_run), "--epochs", "last"]) == 2
    assert "drop checkpoints from eval.csv" in capsys.readouterr().err
    assert main(["evaluate", str(hero_run), "--prompts", "eval", "--set", "eval.transfer_images=0"]) == 2
    assert "nothing to evaluate" in capsys.readouterr().err
    assert main(["evaluate", str(hero_run), "--prompts", "train", "--epochs", "99"]) == 2
    assert "no saved adapter for epoch(s) [99]" in capsys.readouterr().err
    assert main(["evaluate", str(hero_run), "--prompts", "train", "--epochs", "x"]) == 2
    assert (hero_run / "eval.csv").read_bytes() == before and not (hero_run / "eval_train.csv").exists()


def test_budget_is_never_exceeded_and_remainders(tmp_path, tiny_backbone_dir):
    # 11 = 4 + 4 + 3: the last batch is sized to what is left
    state = train(micro(tiny_backbone_dir, budget=11, extra=["eval.every_epochs=5"]), tmp_path / "a", progress=False)
    assert [r["n_images"] for r in state.train_rows] == [4, 4, 3]
    labels = [json.loads(x) for x in (tmp_path / "a" / "ledger.jsonl").read_text().splitlines()]
    assert sum(r["type"] == "label" for r in labels) == 11
    # eval.every_epochs=5: only the start and the last epoch are evaluated
    assert [int(r["epoch"]) for r in rows(tmp_path / "a" / "eval.csv")] == [0, 3]
    # 9 = 4 + 4 + 1: HERO needs one good and one bad image, so the last label is left unspent
    state = train(micro(tiny_backbone_dir, budget=9, extra=["eval.at_start=false"]), tmp_path / "b", progress=False)
    assert [r["n_images"] for r in state.train_rows] == [4, 4] and state.feedback_used == 8
    assert [int(r["epoch"]) for r in rows(tmp_path / "b" / "eval.csv")] == [1, 2]


def test_base_method_evaluates_the_pretrained_model_once(hero_run, tmp_path, tiny_backbone_dir):
    assert main(["train", "--tier", "smoke", "--task", "anomaly", "--method", "base", "--backbone",
                 str(tiny_backbone_dir), "--out", str(tmp_path / "base"), "--quiet", *sum((["--set", o] for o in MICRO), [])
                 ]) == 0
    evals = rows(tmp_path / "base" / "eval.csv")
    assert len(evals) == 1 and evals[0]["feedback_used"] == "0" and evals[0]["method"] == "base"
    # the same eval noise and the same (pretrained) weights as HERO's epoch-0 row
    hero0 = rows(hero_run / "eval.csv")[0]
    for key in ("success_rate", "mean_score", "diversity", "n_eval"):
        assert evals[0][key] == hero0[key]
    assert (tmp_path / "base" / "DONE.json").exists()


# -- primary metric and transfer ---------------------------------------------------------------


class RecordingOracle:
    """Wraps an oracle and records the prompt texts it judges."""

    def __init__(self, oracle):
        self.oracle, self.texts = oracle, []
        self.name, self.version = oracle.name, oracle.version

    def __call__(self, images, texts, metadata):
        self.texts.append(list(texts))
        return self.oracle(images, texts, metadata)


def test_primary_evaluation_samples_the_train_prompts_and_transfer_the_eval_prompts(tiny_backbone, monkeypatch):
    import dataclasses

    import hero_bench.evaluate as evaluate_mod
    from hero_bench.diffusion.sampler import SamplerConfig
    from hero_bench.evaluate import EvalConfig, evaluate_model
    from hero_bench.tasks import get_task

    task = get_task("anomaly")
    train_texts = [p.text for p in task.train_prompts]
    eval_texts = [p.text for p in task.eval_prompts]
    assert set(train_texts).isdisjoint(eval_texts)  # the test needs two different prompt lists
    sampled = []
    real = evaluate_mod.sample_trajectories

    def spy(backbone, texts, *args, **kwargs):
        sampled.append(list(texts))
        return real(backbone, texts, *args, **kwargs)

    monkeypatch.setattr(evaluate_mod, "sample_trajectories", spy)
    oracle = RecordingOracle(task.oracle_factory())
    cfg = EvalConfig(n_images=4, transfer_images=3, batch_size=2, seed=5)
    result = evaluate_model(tiny_backbone, task, oracle, SamplerConfig(steps=2), cfg)
    # primary first: the task's own prompts, cycled to n_images; then the held-out ones, cycled to transfer_images
    assert sampled == [[train_texts[i % 2] for i in range(4)], eval_texts[:3]]
    assert sum(oracle.texts, []) == sampled[0] + sampled[1]
    assert result["n_eval"] == 4 and result["transfer_n_eval"] == 3
    assert set(result) == {"success_rate", "mean_score", "n_eval", "diversity", *TRANSFER_COLUMNS}
    # transfer_images=None: as many as n_images; 0: no transfer sampling, the columns left empty
    sampled.clear()
    result = evaluate_model(tiny_backbone, task, oracle, SamplerConfig(steps=2),
                            dataclasses.replace(cfg, transfer_images=None))
    assert result["transfer_n_eval"] == 4 and sampled[1] == [eval_texts[i % 3] for i in range(4)]
    sampled.clear()
    skipped = evaluate_model(tiny_backbone, task, oracle, SamplerConfig(steps=2),
                             dataclasses.replace(cfg, transfer_images=0))
    assert sampled == [[train_texts[i % 2] for i in range(4)]]
    assert {skipped[c] for c in TRANSFER_COLUMNS} == {None}
    assert (skipped["success_rate"], skipped["diversity"]) == (result["success_rate"], result["diversity"])
    with pytest.raises(ConfigError, match="transfer_images must be >= 0"):
        EvalConfig(transfer_images=-1)


def test_transfer_images_zero_leaves_the_transfer_columns_empty(hero_run, tmp_path, tiny_backbone_dir):
    out = tmp_path / "base"
    train(micro(tiny_backbone_dir, method="base", extra=["eval.transfer_images=0"]), out, progress=False)
    evals = rows(out / "eval.csv")
    assert list(evals[0]) == list(EVAL_COLUMNS) and len(evals) == 1
    assert {evals[0][c] for c in TRANSFER_COLUMNS} == {""}
    # the primary evaluation does not depend on the transfer one: equal to HERO's epoch-0 row
    hero0 = rows(hero_run / "eval.csv")[0]
    for key in ("success_rate", "mean_score", "diversity", "n_eval"):
        assert evals[0][key] == hero0[key]
    assert json.loads((out / "DONE.json").read_text())["final_transfer_success_rate"] is None
    # such a file gathers, and the report then has no transfer rows
    from hero_bench.report import gather, summarise

    df = gather([out / "eval.csv"])
    assert df[list(TRANSFER_COLUMNS)].isna().all().all()
    assert "transfer" not in set(summarise(df, budgets=[8], reps=10).metric)


def test_console_progress_says_what_the_run_does(capsys):
    """The console is a hook of the loop (hero_bench.run_hooks); its lines on a stand-in run."""
    from types import SimpleNamespace

    from hero_bench.run_hooks import ConsoleProgress
    from hero_bench.runner import RunState

    method = SimpleNamespace(trains=True, images_per_epoch=lambda: 4, optimizer_steps=lambda n: n // 2)
    cfg = SimpleNamespace(run_id="toy/sanity/hero/seed0", budget=10, sampler=SimpleNamespace(steps=2),
                          eval=SimpleNamespace(n_images=4, every_epochs=1))
    run = SimpleNamespace(cfg=cfg, method=method, dir="RUN")
    console = ConsoleProgress()
    console.planned(run, [4, 4])
    state = RunState(epoch=1, feedback_used=4, eval_rows=[{"epoch": 1, "success_rate": 0.25}])
    console.training(run, RunState())
    console.epoch_done(run, state, {"n_images": 4, "epoch_s": 1.0, "loss": 0.5})
    console.closed(run)
    err = capsys.readouterr().err
    assert ("toy/sanity/hero/seed0: 4 images per epoch, 2 epoch(s) to the budget of 10 (batches 2×4; "
            "2 label(s) left unspent), 2 optimizer step(s) per epoch") in err
    assert "epoch 1: feedback 4/10 loss=0.5 eval=0.250 (1.0s)" in err
    assert console.bar is None  # closed


def test_method_noise_evaluates_the_final_model_from_both_noise_distributions(hero_run, tmp_path, monkeypatch,
                                                                               capsys):
    import hero_bench.reevaluate as ev

    seen = []
    real = ev.evaluate_prompts

    def spy(*args, **kwargs):
        seen.append(kwargs.get("z_T"))
        return real(*args, **kwargs)

    monkeypatch.setattr(ev, "evaluate_prompts", spy)
    out = tmp_path / "mn.csv"
    assert main(["evaluate", str(hero_run), "--method-noise", "--out", str(out), "--quiet"]) == 0
    rows = list(csv.DictReader(open(out, newline="")))
    assert [r["initial_noise"] for r in rows] == ["gaussian", "method"]
    last = list(csv.DictReader(open(hero_run / "eval.csv", newline="")))[-1]
    # from N(0, I) it is the run's own last evaluation, image for image
    for key in ("epoch", "feedback_used", "success_rate", "mean_score", "n_eval"):
        assert rows[0][key] == last[key]
    assert rows[1]["n_eval"] == last["n_eval"]
    # the second evaluation samples from π_HERO: the checkpoint's best noise, perturbed by ε
    assert seen[0] is None and seen[1] is not None
    state = torch.load(hero_run / "checkpoint.pt", weights_only=True)["method"]
    cfg = from_dict(RunConfig, yaml.safe_load((hero_run / "config.yaml").read_text()))
    n_best = int(cfg.hero.best_ratio * cfg.eval.n_images) if len(state["good_noises"]) else cfg.eval.n_images
    eps = cfg.hero.noise_scale
    near_best = seen[1][:n_best].cpu() - math.sqrt(1 - eps**2) * state["best_noise"]
    assert near_best.std().item() == pytest.approx(eps, rel=0.3)


def test_method_noise_refuses_runs_without_a_noise_distribution_of_their_own(hero_run, tmp_path, capsys):
    ddpo = tmp_path / "ddpo"
    shutil.copytree(hero_run, ddpo)
    text = (ddpo / "config.yaml").read_text().replace("method: hero", "method: ddpo")
    (ddpo / "config.yaml").write_text(text)
    assert main(["evaluate", str(ddpo), "--method-noise"]) == 2
    assert "only HERO samples from a noise distribution of its own" in capsys.readouterr().err
    assert main(["evaluate", str(hero_run), "--method-noise", "--prompts", "train"]) == 2
    assert "takes neither --prompts nor --epochs" in capsys.readouterr().err
