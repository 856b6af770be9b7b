"""ShapesWorld tokenizer and model: round trips, unknown words, the diffusers folder, the shipped weights."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from hero_bench.errors import ConfigError
from hero_bench.toyworld import scenes
from hero_bench.toyworld.model import (
    ModelConfig,
    SchedulerConfig,
    TextEncoderConfig,
    UNetConfig,
    build_components,
    encode_prompts,
    save_components,
)
from hero_bench.toyworld.tokenizer import (
    BOS,
    EOS,
    PAD,
    SPECIAL_TOKENS,
    UNK,
    build_tokenizer,
    load_tokenizer,
    save_tokenizer,
    unknown_words,
)

SHIPPED = Path(__file__).resolve().parents[1] / "hero_bench" / "toyworld" / "pretrained" / "shapesworld"

TINY = ModelConfig(
    text_encoder=TextEncoderConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32),
    unet=UNetConfig(block_out_channels=(8, 16), attention_head_dim=2, norm_num_groups=4),
)


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer()


def test_vocabulary_is_specials_then_every_caption_word(tokenizer):
    vocab = tokenizer.get_vocab()
    assert [vocab[t] for t in SPECIAL_TOKENS] == [0, 1, 2, 3]
    assert set(vocab) == set(SPECIAL_TOKENS) | set(scenes.VOCAB)
    assert tokenizer.pad_token == PAD and tokenizer.unk_token == UNK


def test_every_training_caption_round_trips_without_unk(tokenizer):
    _, captions = scenes.training_batch(np.random.default_rng(0), 256)
    for text in captions:
        ids = tokenizer(text)["input_ids"]
        assert ids[0] == tokenizer.bos_token_id and ids[-1] == tokenizer.eos_token_id
        assert tokenizer.unk_token_id not in ids, text
        assert len(ids) <= tokenizer.model_max_length, text
        assert tokenizer.decode(ids, skip_special_tokens=True) == text


def test_case_and_punctuation_are_normalised(tokenizer):
    assert tokenizer("A Red circle, LEFT of a blue square.")["input_ids"] == tokenizer(
        "a red circle left of a blue square"
    )["input_ids"]


def test_unknown_words_become_unk(tokenizer):
    ids = tokenizer("a pink circle")["input_ids"]
    assert ids == [tokenizer.bos_token_id, tokenizer.convert_tokens_to_ids("a"), tokenizer.unk_token_id,
                   tokenizer.convert_tokens_to_ids("circle"), tokenizer.eos_token_id]
    assert unknown_words(tokenizer, "a pink circle, wobbly!") == ["pink", "wobbly"]
    assert unknown_words(tokenizer, "two red circles at night") == []


def test_padding_and_truncation_to_model_max_length(tokenizer):
    enc = tokenizer(["", "a " * 40], padding="max_length", max_length=tokenizer.model_max_length, truncation=True)
    empty, long = enc["input_ids"]
    assert len(empty) == len(long) == tokenizer.model_max_length
    assert empty[:3] == [tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id]
    assert long[-1] == tokenizer.eos_token_id  # truncation keeps the closing <eos>


def test_saved_tokenizer_loads_through_autotokenizer(tmp_path, tokenizer):
    from transformers import AutoTokenizer

    save_tokenizer(tokenizer, tmp_path / "tokenizer")
    loaded = AutoTokenizer.from_pretrained(str(tmp_path), subfolder="tokenizer", local_files_only=True)
    assert load_tokenizer(tmp_path, "tokenizer").get_vocab() == tokenizer.get_vocab()
    assert loaded.model_max_length == tokenizer.model_max_length
    for text in ["a red circle above a blue square", "three yellow triangles at night", "a pink circle", ""]:
        assert loaded(text)["input_ids"] == tokenizer(text)["input_ids"]
    assert (loaded.bos_token, loaded.eos_token) == (BOS, EOS)


def test_text_encoder_positions_cover_the_tokenizer_length():
    comps = build_components(TINY, seed=0)
    assert comps.text_encoder.config.max_position_embeddings == comps.tokenizer.model_max_length
    assert comps.text_encoder.config.vocab_size == len(comps.tokenizer.get_vocab())
    assert comps.unet.config.cross_attention_dim == comps.text_encoder.config.hidden_size
    emb = encode_prompts(comps.tokenizer, comps.text_encoder, ["a red circle", ""])
    assert emb.shape == (2, comps.tokenizer.model_max_length, 16)


def test_build_is_deterministic_from_seed_and_leaves_global_rng_alone():
    state = torch.random.get_rng_state()
    a, b, c = (build_components(TINY, seed=s) for s in (3, 3, 4))
    assert torch.equal(torch.random.get_rng_state(), state)
    sa, sb, sc = (x.unet.state_dict() for x in (a, b, c))
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


@pytest.fixture(scope="module")
def tiny_toy_dir(tmp_path_factory):
    return save_components(build_components(TINY, seed=0), tmp_path_factory.mktemp("toy") / "model",
                           extra_files={"note.txt": "hello\n"})


def test_saved_folder_is_diffusers_layout_without_vae(tiny_toy_dir):
    names = {p.name for p in tiny_toy_dir.iterdir()}
    assert {"unet", "text_encoder", "tokenizer", "scheduler", "model_index.json", "note.txt"} <= names
    assert "vae" not in names
    index = json.loads((tiny_toy_dir / "model_index.json").read_text())
    assert index["vae"] == [None, None] and index["unet"] == ["diffusers", "UNet2DConditionModel"]
    assert (tiny_toy_dir / "unet" / "diffusion_pytorch_model.safetensors").exists()
    assert not list(tiny_toy_dir.parent.glob(".model.*")), "temporary folders left behind"


def test_saving_again_replaces_the_folder_atomically(tmp_path):
    target = save_components(build_components(TINY, seed=0), tmp_path / "m")
    (target / "stale.txt").write_text("old")
    save_components(build_components(TINY, seed=1), target)
    assert not (target / "stale.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


def _check_backbone_samples(folder: Path, n: int = 3) -> np.ndarray:
    from hero_bench.diffusion.backbone import load_backbone
    from hero_bench.diffusion.sampler import SamplerConfig, initial_noise, sample_trajectories

    bb = load_backbone(str(folder))
    assert bb.vae is None and bb.latent_shape == (3, 16, 16) and bb.image_size == 16
    gen = torch.Generator().manual_seed(0)
    cfg = SamplerConfig(steps=3, batch_size=n)
    z = initial_noise(bb, n, gen)
    traj = sample_trajectories(bb, ["a red circle"] * n, z, cfg, gen)
    assert traj.images.shape == (n, 16, 16, 3) and traj.images.dtype == np.uint8
    assert torch.isfinite(traj.log_probs).all()
    return traj.images


def test_saved_folder_loads_through_load_backbone_and_samples(tiny_toy_dir):
    _check_backbone_samples(tiny_toy_dir)


def test_a_zero_terminal_snr_model_samples_from_pure_noise_with_finite_log_probs(tmp_path):
    """v-prediction on a zero-SNR schedule with trailing spacing: sampling starts at the last training
    step, where alpha_bar is 0, and every step's log-prob stays finite (sigma > 0 at every step)."""
    from hero_bench.diffusion.backbone import load_backbone
    from hero_bench.diffusion.sampler import set_timesteps

    zero_snr = SchedulerConfig(prediction_type="v_prediction", rescale_betas_zero_snr=True, timestep_spacing="trailing")
    folder = save_components(build_components(dataclasses.replace(TINY, scheduler=zero_snr), seed=0), tmp_path / "m")
    bb = load_backbone(str(folder))
    assert set_timesteps(bb, 3)[0] == 999 and float(bb.scheduler.alphas_cumprod[999]) == 0.0
    _check_backbone_samples(folder)
    # zero SNR is refused where it cannot work: epsilon at alpha_bar = 0, or sampling that starts before t = 999
    with pytest.raises(ConfigError, match="needs prediction_type=v_prediction and timestep_spacing=trailing"):
        SchedulerConfig(rescale_betas_zero_snr=True, timestep_spacing="trailing")
    with pytest.raises(ConfigError, match="needs prediction_type=v_prediction and timestep_spacing=trailing"):
        SchedulerConfig(prediction_type="v_prediction", rescale_betas_zero_snr=True)
    with pytest.raises(ConfigError, match="timestep_spacing='linspace' is not accepted; accepted: leading, trailing"):
        SchedulerConfig(timestep_spacing="linspace")


def test_shipped_weights_load_through_the_standard_loader():
    if not (SHIPPED / "model_index.json").exists():
        pytest.skip(f"shipped ShapesWorld weights not built yet ({SHIPPED}); `hero-bench pretrain-toy` builds them")
    record = json.loads((SHIPPED / "training_config.json").read_text())
    assert record["generator_version"] == scenes.GENERATOR_VERSION, (
        "the shipped weights were trained on another scene generator version; rebuild them"
    )
    assert (SHIPPED / "MODEL_CARD.md").exists()
    size = sum(p.stat().st_size for p in SHIPPED.rglob("*") if p.is_file())
    assert size < 20e6, f"shipped weights are {size / 1e6:.1f} MB; keep them a few MB"
    images = _check_backbone_samples(SHIPPED, n=4)
    # a trained model draws a background, not noise: most pixels lie close to a palette colour
    palette = np.array(list(scenes.PALETTE.values()), dtype=np.int32)
    dist = np.abs(images[..., None, :].astype(np.int32) - palette).sum(-1).min(-1)
    assert (dist < 90).mean() > 0.5


def test_wilson_interval_known_values():
    from hero_bench.toyworld.base_rates import wilson_interval

    lo, hi = wilson_interval(0, 10)
    # published 4-decimal values (rounding <= 5e-5); float64 round-off is ~1e-16
    assert lo == 0.0 and hi == pytest.approx(0.2775, abs=1e-4)
    lo, hi = wilson_interval(5, 10)
    assert (lo, hi) == (pytest.approx(0.2366, abs=1e-4), pytest.approx(0.7634, abs=1e-4))
    lo, hi = wilson_interval(256, 256)
    assert hi == 1.0 and lo == pytest.approx(0.9852, abs=1e-4)


def _rates(**successes):
    from hero_bench.toyworld.base_rates import wilson_interval

    return {"n": 100, "eval_seed": 1, "sampler": {"steps": 20},
            "tasks": [{"task": t, "successes": k, "success_rate": k / 100, "ci95": list(wilson_interval(k, 100))}
                      for t, k in successes.items()]}


def test_compare_rates_checks_each_task_against_the_reference_interval():
    from hero_bench.errors import ConfigError
    from hero_bench.toyworld.base_rates import compare_rates

    reference = _rates(a=20, b=50)  # Wilson 95%: a [13.3%, 28.9%], b [40.4%, 59.6%]
    rows = compare_rates(reference, _rates(a=28, b=39))
    assert [(r["task"], r["inside"]) for r in rows] == [("a", True), ("b", False)]
    assert rows[0]["reference_ci95"] == pytest.approx([0.1333, 0.2888], abs=1e-4)
    with pytest.raises(ConfigError, match="different eval_seed"):
        compare_rates(reference, {**_rates(a=20), "eval_seed": 2})
    with pytest.raises(ConfigError, match="not in the reference"):
        compare_rates(reference, _rates(c=20))


def test_merge_rates_replaces_the_measured_tasks_and_keeps_the_others():
    from hero_bench.errors import ConfigError
    from hero_bench.toyworld.base_rates import merge_rates, oracle_versions

    existing = _rates(a=20, b=50, c=30)
    for r in existing["tasks"]:
        r["oracle"] = "shapes v5"
    update = _rates(b=41, d=12)
    for r in update["tasks"]:
        r["oracle"] = "shapes v6"
    merged = merge_rates(existing, update)
    assert [(r["task"], r["successes"], r["oracle"]) for r in merged["tasks"]] == [
        ("a", 20, "shapes v5"), ("b", 41, "shapes v6"), ("c", 30, "shapes v5"), ("d", 12, "shapes v6")]
    assert existing["tasks"][1]["successes"] == 50, "the file's rates are not changed in place"
    assert oracle_versions(merged["tasks"]) == "`shapes v5` for a, c; `shapes v6` for b, d"
    assert oracle_versions(existing["tasks"]) == "`shapes v5`"
    with pytest.raises(ConfigError, match=r"different n: the file has 100, this measurement 64"):
        merge_rates(existing, {**update, "n": 64})
    with pytest.raises(ConfigError, match="different sampler"):
        merge_rates(existing, {**update, "sampler": {"steps": 10}})
    with pytest.raises(ConfigError, match="different backbone"):
        merge_rates({**existing, "backbone": "models/a"}, {**update, "backbone": "models/b"})
    assert merge_rates({**existing, "backbone": "models/a"}, {**update, "backbone": "./models/a/"})


def test_a_sampler_setting_added_later_compares_at_its_default():
    """A base_rates.json written before a SamplerConfig field existed was measured at that field's
    default: it compares equal to a measurement at the default, and unequal to one that changes it."""
    from hero_bench.errors import ConfigError
    from hero_bench.toyworld.base_rates import compare_rates, merge_rates

    old = _rates(a=20)  # its sampler names only "steps"
    now = {**_rates(a=22), "sampler": {"steps": 20, "use_clipped_model_output": False}}
    assert compare_rates(old, now)[0]["inside"]
    assert merge_rates(old, now)["tasks"][0]["successes"] == 22
    rederived = {**now, "sampler": {"steps": 20, "use_clipped_model_output": True}}
    with pytest.raises(ConfigError, match="different sampler"):
        compare_rates(old, rederived)
    with pytest.raises(ConfigError, match="different sampler"):
        merge_rates(old, rederived)


def test_base_rates_use_the_benchmarks_eval_protocol(tiny_toy_dir):
    """base_rates must reproduce evaluate_model's epoch-0 numbers: the transfer column on the
    held-out prompts and the primary metric on the training prompts (same seeds and oracle)."""
    from hero_bench.diffusion.backbone import load_backbone
    from hero_bench.diffusion.sampler import SamplerConfig
    from hero_bench.evaluate import EvalConfig, evaluate_model
    from hero_bench.tasks import get_task
    from hero_bench.toyworld.base_rates import measure_task, success_grid

    bb = load_backbone(str(tiny_toy_dir))
    task = get_task("relation")
    cfg = SamplerConfig(steps=2)
    row = measure_task(bb, task, cfg, n=6, seed=7, batch_size=4)
    ref = evaluate_model(bb, task, task.oracle_factory(), cfg, EvalConfig(n_images=6, seed=7, batch_size=4))
    assert row["success_rate"] == ref["transfer_success_rate"] and row["n"] == 6 == ref["transfer_n_eval"]
    train = measure_task(bb, task, cfg, n=6, seed=7, batch_size=4, prompt_set="train")
    assert train["success_rate"] == ref["success_rate"] and train["n"] == 6 == ref["n_eval"]
    assert set(train["per_prompt"]) == {p.text for p in task.train_prompts}
    assert train["in_accepted_range"] == (0.10 <= train["success_rate"] <= 0.60)
    assert sum(v["n"] for v in row["per_prompt"].values()) == 6
    assert row["ci95"][0] <= row["success_rate"] <= row["ci95"][1]
    grid = success_grid(row["_images"], row["_success"], columns=3)
    assert grid.dtype == np.uint8 and grid.shape[2] == 3


def test_base_rates_command_writes_the_measurement_and_compares(tiny_toy_dir, tmp_path, capsys):
    """`hero-bench base-rates` writes what measure_all measures, and --compare against the same
    measurement finds every task inside its own interval."""
    from hero_bench.cli import main
    from hero_bench.toyworld.base_rates import measure_all

    out = tmp_path / "rates.json"
    args = ["base-rates", "--backbone", str(tiny_toy_dir), "--n", "4", "--task", "sanity", "--steps", "2",
            "--no-progress"]
    assert main([*args, "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| sanity | sanity |" in printed and "n=4, eval seed 20250" in printed
    written = json.loads(out.read_text())
    direct = measure_all(str(tiny_toy_dir), n=4, tasks=["sanity"], sampler_overrides={"steps": 2}, progress=False)
    for rates in (written, direct):
        for row in rates["tasks"]:
            row.pop("seconds")  # wall time
    assert written == json.loads(json.dumps(direct))
    assert main([*args, "--compare", str(out)]) == 0
    assert "every task inside the reference's 95% interval" in capsys.readouterr().out


def test_base_rates_update_re_measures_only_the_named_tasks(tiny_toy_dir, tmp_path, capsys):
    """--update replaces the measured task's entry in an existing file and keeps the others."""
    from hero_bench.cli import main

    out = tmp_path / "rates.json"
    args = ["base-rates", "--backbone", str(tiny_toy_dir), "--n", "4", "--steps", "2", "--no-progress"]
    assert main([*args, "--task", "sanity", "--task", "relation", "--json", str(out)]) == 0
    before = json.loads(out.read_text())
    before["tasks"][0]["successes"] = -1  # marks: sanity must be replaced by a fresh measurement
    before["tasks"][1]["oracle"] = "shapes v0"  # relation must be kept as it was
    out.write_text(json.dumps(before))
    assert main([*args, "--task", "sanity", "--update", str(out)]) == 0
    after = json.loads(out.read_text())
    assert [r["task"] for r in after["tasks"]] == ["sanity", "relation"]
    assert after["tasks"][0]["successes"] >= 0
    assert after["tasks"][1] == before["tasks"][1]
    # a model folder stands for its base_rates.json
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "base_rates.json").write_text(out.read_text())
    assert main([*args, "--task", "sanity", "--update", str(folder)]) == 0
    assert json.loads((folder / "base_rates.json").read_text())["tasks"][1] == before["tasks"][1]
    capsys.readouterr()
    for extra, message in ((["--n", "8", "--update", str(out)], f"--update {out}: its rates were measured with --n 4"),
                           (["--update", str(out), "--json", str(out)], "--update FILE writes FILE; give --json"),
                           (["--update", str(tmp_path / "none.json")], "--update "),):
        assert main([*args, "--task", "sanity", *extra]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"hero-bench base-rates: error: {message}") and "\n" not in err, err


def test_base_rates_command_bad_input_is_one_line(tiny_toy_dir, tmp_path, capsys):
    from hero_bench.cli import main

    base = ["base-rates", "--backbone", str(tiny_toy_dir)]
    for extra, message in ((["--n", "0"], "--n must be >= 1, got 0"),
                           (["--task", "hand"], "--task hand: a paper-tier task; base-rates measures toy tasks: "),
                           (["--compare", str(tmp_path)], f"--compare {tmp_path}: no base_rates.json there")):
        assert main(base + extra) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"hero-bench base-rates: error: {message}") and "\n" not in err
