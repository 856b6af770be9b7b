"""ShapesWorld pretraining: determinism from the seed, exact resume, checkpoint safety, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from hero_bench.cli import main as cli_main
from hero_bench.config import from_dict, to_dict
from hero_bench.errors import ConfigError
from hero_bench.toyworld import scenes
from hero_bench.toyworld.model import ModelConfig, SchedulerConfig, TextEncoderConfig, UNetConfig, load_components
from hero_bench.toyworld.pretrain import PretrainConfig, learning_rate, pretrain, step_batch
from hero_bench.toyworld.recipe import START_FROM

TINY_MODEL = ModelConfig(
    text_encoder=TextEncoderConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32),
    unet=UNetConfig(block_out_channels=(8, 16), attention_head_dim=2, norm_num_groups=4),
)
TINY = PretrainConfig(model=TINY_MODEL, steps=3, batch_size=4, warmup_steps=1, checkpoint_every=1, log_every=1,
                      ema_decay=0.9)


def _weights(folder):
    comps = load_components(folder)
    return {**{"unet." + k: v for k, v in comps.unet.state_dict().items()},
            **{"te." + k: v for k, v in comps.text_encoder.state_dict().items()}}


def _same(a, b) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("pretrain") / "ref"
    result = pretrain(TINY, out, resume=False, progress=False, preview=False)
    return out, result


def test_run_writes_model_log_and_record(reference_run):
    out, result = reference_run
    assert result.steps_done == 3 and result.model_dir == out / "model"
    assert np.isfinite(result.final_loss)
    record = json.loads((out / "model" / "training_config.json").read_text())
    assert record["generator_version"] == scenes.GENERATOR_VERSION
    assert record["steps"] == 3 and record["data_seed"] == 0 and record["weights"] == "ema"
    assert from_dict(PretrainConfig, record["pretrain_config"]) == TINY
    assert record["final_loss_mean_last_100"] == pytest.approx(result.final_loss)
    log = (out / "train_log.csv").read_text().splitlines()
    assert log[0] == "step,loss,loss_mean_window,lr,elapsed_s" and len(log) == 4
    assert (out / "model_raw" / "unet").is_dir()  # EMA on: the raw weights are kept for comparison
    assert not _same(_weights(out / "model"), _weights(out / "model_raw"))


def test_the_generator_version_chooses_the_scene_distribution():
    """A stage that names a version of the world draws that version's batches (the world2 recipe's
    fifth stage draws version 2, its first four the default)."""
    v2 = PretrainConfig(**{**TINY.__dict__, "generator": "shapesworld-2", "batch_size": 64})
    default = PretrainConfig(**{**TINY.__dict__, "batch_size": 64})
    assert default.generator == scenes.GENERATOR_VERSION
    _, v2_captions, _, _ = step_batch(v2, 0)
    _, default_captions, _, _ = step_batch(default, 0)
    rng = np.random.default_rng([0, 0])
    _, expected = scenes.training_batch(rng, 64, scenes.world("shapesworld-2"))
    drop = np.random.default_rng([0, 0, 1]).random(64) < v2.caption_dropout
    assert v2_captions == ["" if d else c for c, d in zip(expected, drop)]
    assert v2_captions != default_captions
    with pytest.raises(ConfigError, match="generator='shapesworld-9' is not a ShapesWorld generator version; "
                                          "accepted: shapesworld-1, shapesworld-2"):
        PretrainConfig(generator="shapesworld-9")


def test_same_seed_gives_identical_weights(reference_run, tmp_path):
    out, _ = reference_run
    pretrain(TINY, tmp_path / "again", resume=False, progress=False, preview=False)
    assert _same(_weights(out / "model"), _weights(tmp_path / "again" / "model"))


def test_other_seed_gives_other_weights(reference_run, tmp_path):
    out, _ = reference_run
    cfg = PretrainConfig(**{**TINY.__dict__, "data_seed": 1})
    pretrain(cfg, tmp_path / "other", resume=False, progress=False, preview=False)
    assert not _same(_weights(out / "model"), _weights(tmp_path / "other" / "model"))


def test_interrupted_and_resumed_run_matches_uninterrupted(reference_run, tmp_path):
    out, ref = reference_run
    first = pretrain(TINY, tmp_path / "r", resume=False, stop_after=2, progress=False, preview=False)
    assert first.model_dir is None and first.steps_done == 2
    assert not (tmp_path / "r" / "model").exists()
    assert torch.load(tmp_path / "r" / "checkpoint.pt", weights_only=False)["step"] == 2
    second = pretrain(TINY, tmp_path / "r", resume=True, progress=False, preview=False)
    assert second.steps_done == 3
    assert _same(_weights(out / "model"), _weights(tmp_path / "r" / "model"))
    assert _same(_weights(out / "model_raw"), _weights(tmp_path / "r" / "model_raw"))
    assert second.final_loss == pytest.approx(ref.final_loss, abs=0, rel=0)


def test_resume_with_a_different_config_is_refused(tmp_path):
    pretrain(TINY, tmp_path / "r", resume=False, stop_after=1, progress=False, preview=False)
    other = PretrainConfig(**{**TINY.__dict__, "learning_rate": 5e-4})
    with pytest.raises(ConfigError, match="learning_rate"):
        pretrain(other, tmp_path / "r", resume=True, progress=False, preview=False)


def test_step_batches_are_a_pure_function_of_seeds_and_step():
    a = step_batch(TINY, 5)
    b = step_batch(TINY, 5)
    c = step_batch(TINY, 6)
    for x, y in zip(a, b):
        assert x == y if isinstance(x, list) else torch.equal(x, y)
    assert not torch.equal(a[0], c[0])
    assert a[0].shape == (4, 3, 16, 16) and a[0].min() >= -1 and a[0].max() <= 1


def test_caption_dropout_rate():
    cfg = PretrainConfig(model=TINY_MODEL, batch_size=2000, caption_dropout=0.1)
    _, captions, _, _ = step_batch(cfg, 0)
    assert 0.07 < sum(c == "" for c in captions) / len(captions) < 0.13


def test_learning_rate_schedule():
    cfg = PretrainConfig(steps=100, warmup_steps=10, learning_rate=1e-3, lr_final_fraction=0.1)
    assert learning_rate(cfg, 0) == pytest.approx(1e-4)
    assert learning_rate(cfg, 9) == pytest.approx(1e-3)
    assert learning_rate(cfg, 99) == pytest.approx(1e-4, rel=0.05)
    lrs = [learning_rate(cfg, s) for s in range(10, 100)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))


def test_config_rejects_bad_values_and_unknown_keys():
    with pytest.raises(ConfigError, match="caption_dropout"):
        PretrainConfig(caption_dropout=1.0)
    with pytest.raises(ConfigError, match="stepz"):
        from_dict(PretrainConfig, {"stepz": 3})
    assert from_dict(PretrainConfig, to_dict(TINY)) == TINY


def test_cli_runs_resumes_and_writes_preview(tmp_path, capsys):
    out = tmp_path / "cli"
    sets = []
    for key, value in to_dict(TINY_MODEL).items():
        if isinstance(value, dict):
            sets += [f"model.{key}.{k}={','.join(map(str, v)) if isinstance(v, list) else v}" for k, v in value.items()]
    args = ["pretrain-toy", "--out", str(out), "--steps", "2", "--batch-size", "2", "--checkpoint-every", "1",
            "--no-progress", "--threads", "1"] + [a for s in sets for a in ("--set", s)]
    threads = torch.get_num_threads()
    try:
        assert cli_main(args) == 0
    finally:
        torch.set_num_threads(threads)  # --threads is process-wide; later tests expect the default
    assert "2 steps" in capsys.readouterr().out
    assert (out / "model" / "model_index.json").exists()
    assert sorted(p.name for p in (out / "preview").iterdir()) == ["step_000001.png", "step_000002.png"]
    # a finished run resumed again only rewrites the model
    i = args.index("--threads")
    del args[i:i + 2]
    assert cli_main(args) == 0
    assert cli_main(["pretrain-toy", "--out", str(out), "--set", "no_such_key=1"]) == 2
    assert "no_such_key" in capsys.readouterr().err


def test_second_stage_starts_from_a_previous_model(reference_run, tmp_path):
    out, _ = reference_run
    stage2 = PretrainConfig(**{**TINY.__dict__, "init_from": str(out / "model_raw"), "data_seed": 1, "ema_decay": 0.0})
    pretrain(stage2, tmp_path / "s2", resume=False, progress=False, preview=False)
    record = json.loads((tmp_path / "s2" / "training_config.json").read_text())
    assert record["init_from"]["path"] == str(out / "model_raw")
    assert record["init_from"]["record"]["steps"] == 3 and len(record["init_from"]["sha256"]["unet"]) == 64
    scratch = PretrainConfig(**{**stage2.__dict__, "init_from": ""})
    pretrain(scratch, tmp_path / "scratch", resume=False, progress=False, preview=False)
    assert not _same(_weights(tmp_path / "s2" / "model"), _weights(tmp_path / "scratch" / "model"))
    # with a zero learning rate the second stage keeps the first stage's weights exactly
    frozen = PretrainConfig(**{**stage2.__dict__, "learning_rate": 0.0, "weight_decay": 0.0})
    pretrain(frozen, tmp_path / "frozen", resume=False, progress=False, preview=False)
    assert _same(_weights(tmp_path / "frozen" / "model"), _weights(out / "model_raw"))


def test_a_stage_can_move_a_model_to_v_prediction(reference_run, tmp_path):
    """A stage may change the UNet's target (same networks): its loss is MSE against v, and the saved
    scheduler tells the sampler to read the output as v."""
    from diffusers import DDIMScheduler

    out, _ = reference_run
    v_model = ModelConfig(text_encoder=TINY_MODEL.text_encoder, unet=TINY_MODEL.unet,
                          scheduler=SchedulerConfig(prediction_type="v_prediction"))
    v_stage = PretrainConfig(**{**TINY.__dict__, "model": v_model, "init_from": str(out / "model"),
                                "learning_rate": 0.0, "weight_decay": 0.0, "ema_decay": 0.0})
    pretrain(v_stage, tmp_path / "v", resume=False, progress=False, preview=False)
    comps = load_components(tmp_path / "v" / "model")
    assert comps.scheduler.config.prediction_type == "v_prediction"
    # lr 0: the weights are the previous stage's, so the logged loss is that model's MSE against v at
    # step 0's batch, which differs from its MSE against the noise
    x0, captions, noise, t = step_batch(v_stage, 0)
    from hero_bench.toyworld.model import encode_prompts

    with torch.no_grad():
        pred = comps.unet(comps.scheduler.add_noise(x0, noise, t), t,
                          encode_prompts(comps.tokenizer, comps.text_encoder, captions)).sample
    v_target = DDIMScheduler(**{**comps.scheduler.config}).get_velocity(x0, noise, t)
    logged = float((tmp_path / "v" / "train_log.csv").read_text().splitlines()[1].split(",")[1])
    assert logged == pytest.approx(float(torch.nn.functional.mse_loss(pred, v_target)), rel=1e-4)
    assert logged != pytest.approx(float(torch.nn.functional.mse_loss(pred, noise)), rel=1e-2)
    with pytest.raises(ConfigError, match="prediction_type='sample' is not accepted"):
        PretrainConfig(model=ModelConfig(scheduler=SchedulerConfig(prediction_type="sample")))


def test_second_stage_refuses_another_architecture(reference_run, tmp_path):
    out, _ = reference_run
    other = ModelConfig(text_encoder=TINY_MODEL.text_encoder,
                        unet=UNetConfig(block_out_channels=(8, 8), attention_head_dim=2, norm_num_groups=4))
    cfg = PretrainConfig(**{**TINY.__dict__, "model": other, "init_from": str(out / "model_raw")})
    with pytest.raises(ConfigError, match="another architecture"):
        pretrain(cfg, tmp_path / "x", resume=False, progress=False, preview=False)
    with pytest.raises(ConfigError, match="not a pretrain-toy model folder"):
        pretrain(PretrainConfig(**{**TINY.__dict__, "init_from": str(tmp_path)}), tmp_path / "y",
                 resume=False, progress=False, preview=False)


# settings that only change bookkeeping, not the weights
BOOKKEEPING = {"checkpoint_every", "log_every", "init_from"}


def test_shipped_recipe_matches_the_shipped_training_record():
    from hero_bench.diffusion.backbone import resolve_backbone
    from hero_bench.presets import TOY_BACKBONE
    from hero_bench.toyworld.recipe import SHIPPED, stage_configs

    record = json.loads((Path(resolve_backbone(TOY_BACKBONE)) / "training_config.json").read_text())
    records = [record]  # each stage's record nests the one it started from
    while records[0].get("init_from"):
        records.insert(0, records[0]["init_from"]["record"])
    plan = stage_configs(SHIPPED, "/out")
    assert len(plan) == len(records)
    for (folder, cfg), rec in zip(plan, records):
        recorded = {k: v for k, v in rec["pretrain_config"].items() if k not in BOOKKEEPING}
        # records written before the field existed name their scene distribution only at the top level
        recorded.setdefault("generator", rec["generator_version"])
        # records written before the field existed trained the only target there was
        recorded["model"]["scheduler"] = {**to_dict(SchedulerConfig()), **recorded["model"]["scheduler"]}
        planned = {k: v for k, v in to_dict(cfg).items() if k not in BOOKKEEPING}
        assert planned == recorded, folder.name
    assert plan[0][1].init_from == ""
    for (previous, _), (_, cfg), (_, fields), rec in zip(plan, plan[1:], SHIPPED[1:], records[1:]):
        # the recipe starts each stage from the weights the shipped stage started from
        assert cfg.init_from == str(previous / START_FROM[fields.get("start_from", "raw")])
        assert Path(rec["init_from"]["path"]).name in ("model_raw", "model", "shapesworld")
    assert record["weights"] == "ema"  # the shipped weights are the last stage's EMA weights


def test_the_world2_recipe_is_the_shipped_one_plus_a_stage_on_version_2():
    from hero_bench.toyworld.recipe import RECIPES, SHIPPED, WORLD2, stage_configs

    assert RECIPES["world2"] is WORLD2 and WORLD2[:len(SHIPPED)] == SHIPPED
    plan = stage_configs(WORLD2, "/out")
    assert [cfg.generator for _, cfg in plan] == ["shapesworld-1"] * len(SHIPPED) + ["shapesworld-2"]
    assert plan[-1][1].init_from == "/out/stage4/model"  # the shipped model's weights
    assert plan[-1][1].model == plan[-2][1].model  # the same schedule, another world


def test_recipe_chains_stages_like_separate_runs(tmp_path):
    from hero_bench.toyworld.recipe import run_recipe

    stages = (("a", {"steps": 2}), ("b", {"steps": 2, "seed": 1, "data_seed": 1, "ema_decay": 0.5}))
    seen = []
    results = run_recipe(stages, tmp_path / "r", base=TINY, progress=False, preview=False,
                         on_stage=lambda i, name, res: seen.append((i, name, res.steps_done)))
    assert seen == [(0, "a", 2), (1, "b", 2)]
    assert results[-1].model_dir == tmp_path / "r" / "b" / "model"
    record = json.loads((tmp_path / "r" / "b" / "training_config.json").read_text())
    assert record["init_from"]["path"] == str(tmp_path / "r" / "a" / "model_raw")
    # the same two stages run by hand give the same weights, bit for bit
    first = PretrainConfig(**{**TINY.__dict__, "steps": 2})
    pretrain(first, tmp_path / "a", resume=False, progress=False, preview=False)
    second = PretrainConfig(**{**first.__dict__, "seed": 1, "data_seed": 1, "ema_decay": 0.5,
                               "init_from": str(tmp_path / "a" / "model_raw")})
    pretrain(second, tmp_path / "b", resume=False, progress=False, preview=False)
    assert _same(_weights(tmp_path / "b" / "model"), _weights(tmp_path / "r" / "b" / "model"))


def test_recipe_rejects_bad_stages(tmp_path):
    from hero_bench.toyworld.recipe import stage_configs

    with pytest.raises(ConfigError, match="chains its stages"):
        stage_configs((("a", {"init_from": "x"}),), tmp_path)
    with pytest.raises(ConfigError, match="stepz"):
        stage_configs((("a", {"stepz": 1}),), tmp_path)
    with pytest.raises(ConfigError, match="start_from='best'; accepted: raw, ema"):
        stage_configs((("a", {}), ("b", {"start_from": "best"})), tmp_path)
    assert stage_configs((("a", {}), ("b", {"start_from": "ema"})), tmp_path)[1][1].init_from == str(tmp_path / "a" / "model")


def test_cli_recipe_refuses_settings_it_fixes(tmp_path, capsys):
    assert cli_main(["pretrain-toy", "--recipe", "shipped", "--out", str(tmp_path), "--seed", "3"]) == 2
    assert "drop --seed" in capsys.readouterr().err
    assert cli_main(["pretrain-toy", "--recipe", "shipped", "--out", str(tmp_path), "--set", "steps=1"]) == 2
    assert "drop --set" in capsys.readouterr().err
    assert cli_main(["pretrain-toy", "--recipe", "nope", "--out", str(tmp_path)]) == 2
    assert "accepted: shipped" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())  # refused before anything was written


def test_model_card_commands_rebuild_the_recipe(tmp_path):
    """The per-stage commands the model card prints parse to the recipe's stage configs."""
    import shlex
    import shutil

    from hero_bench.cli import build_parser
    from hero_bench.commands.pretrain_toy import config_from_args
    from hero_bench.diffusion.backbone import resolve_backbone
    from hero_bench.presets import TOY_BACKBONE
    from hero_bench.toyworld.base_rates import write_model_card
    from hero_bench.toyworld.recipe import SHIPPED, stage_configs

    shipped = Path(resolve_backbone(TOY_BACKBONE))
    folder = tmp_path / "card"
    shutil.copytree(shipped, folder)
    rates = json.loads((shipped / "base_rates.json").read_text())
    card = write_model_card(folder, rates).read_text()
    assert "hero-bench pretrain-toy --recipe shipped --out work" in card
    lines = [line for line in card.splitlines() if line.startswith("hero-bench pretrain-toy --out work/stage")]
    plan = stage_configs(SHIPPED, "work")
    assert len(lines) == len(plan)
    parser = build_parser()
    for line, (folder_, cfg) in zip(lines, plan):
        args = parser.parse_args(shlex.split(line)[1:])
        assert Path(args.out) == folder_
        assert {k: v for k, v in to_dict(config_from_args(args)).items() if k not in BOOKKEEPING} == \
            {k: v for k, v in to_dict(cfg).items() if k not in BOOKKEEPING}
        assert config_from_args(args).init_from == cfg.init_from


def test_preview_grid_tiles_samples_and_stays_importable_from_pretrain(reference_run, tmp_path):
    from PIL import Image

    from hero_bench.toyworld import preview, pretrain as pretrain_module

    for name in ("PREVIEW_PROMPTS", "preview_grid", "save_png", "tile"):
        assert getattr(pretrain_module, name) is getattr(preview, name)
    comps = load_components(reference_run[0] / "model")
    grid = preview.preview_grid(comps, prompts=("", "a red circle"), per_prompt=3, steps=2)
    # 2 rows of 3 samples, 16 px upscaled 4x, 1 px gutters
    assert grid.shape == (2 * 65 + 1, 3 * 65 + 1, 3) and grid.dtype == np.uint8
    assert not comps.unet.training  # the preview leaves the modules in the mode it found them
    assert np.array_equal(grid, preview.preview_grid(comps, prompts=("", "a red circle"), per_prompt=3, steps=2))
    preview.save_png(tmp_path / "p" / "grid.png", grid)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "p" / "grid.png")), grid)
