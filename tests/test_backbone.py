"""Backbone loading (latent and pixel space, both tokenizer kinds), clear errors, the tiny build and CLIs."""

from __future__ import annotations

import json
import shutil
import time

import numpy as np
import pytest
import torch
from PIL import Image

from hero_bench.cli import main
from hero_bench.diffusion.backbone import load_backbone, resolve_device, resolve_dtype
from hero_bench.diffusion.lora import add_lora, save_lora
from hero_bench.diffusion.tiny import build_info, is_complete
from hero_bench.errors import BackboneNotFoundError, ConfigError, UnsupportedBackboneError

from conftest import NET_RTOL


def test_tiny_backbone_loads_with_expected_shapes(tiny_backbone):
    bb = tiny_backbone
    assert bb.latent_shape == (4, 16, 16) and bb.image_size == 32 and bb.vae is not None
    assert type(bb.scheduler).__name__ == "DDIMScheduler"
    assert bb.scheduler.config.beta_schedule == "scaled_linear" and bb.scheduler.config.steps_offset == 1
    emb = bb.encode_prompts(["a red circle", "a zebra!", "a red circle"])
    assert emb.shape == (3, 77, 32) and not emb.requires_grad
    # rows 0 and 2 of one batch: a row's result may depend on its position in the GEMM blocking
    # (measured 7e-7 apart with SSE kernels), so the text encoder's relative NET_RTOL, not bitwise;
    # different prompts differ by O(1)
    torch.testing.assert_close(emb[0], emb[2], rtol=NET_RTOL, atol=NET_RTOL)
    assert not torch.allclose(emb[0], emb[1], rtol=NET_RTOL, atol=NET_RTOL)
    images = bb.decode(torch.randn(2, 4, 16, 16, generator=torch.Generator().manual_seed(0)))
    assert images.shape == (2, 32, 32, 3) and images.dtype == np.uint8


def test_vae_decode_follows_the_sd_convention(tiny_backbone):
    bb = tiny_backbone
    latents = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = bb.vae.decode(latents / bb.vae.config.scaling_factor).sample
    expected = ((ref / 2 + 0.5).clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    # bitwise: decode runs these very operations on the same single-latent batch
    np.testing.assert_array_equal(bb.decode(latents), expected)


def test_pixel_space_backbone_and_word_level_tokenizer(tiny_backbone_dir, tmp_path):
    from diffusers import UNet2DConditionModel
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    folder = tmp_path / "pixel"
    for part in ("text_encoder", "scheduler"):
        shutil.copytree(tiny_backbone_dir / part, folder / part)
    words = ["[PAD]", "[UNK]", "a", "red", "blue", "circle", "square"]
    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="[PAD]", unk_token="[UNK]", model_max_length=8
    ).save_pretrained(folder / "tokenizer")
    torch.manual_seed(0)
    UNet2DConditionModel(
        sample_size=16, in_channels=3, out_channels=3, block_out_channels=(32, 64), layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32, attention_head_dim=8,
    ).save_pretrained(folder / "unet")

    bb = load_backbone(str(folder))
    assert bb.vae is None and bb.latent_shape == (3, 16, 16) and bb.image_size == 16
    emb = bb.encode_prompts(["a red circle", "a blue square"])
    assert emb.shape == (2, 8, 32)  # padded to the tokenizer's length (shorter than the encoder's 77)
    latents = torch.tensor([-1.0, -0.5, 0.0, 0.5, 1.0, 3.0]).reshape(1, 3, 1, 2).expand(1, 3, 2, 2)
    img = bb.decode(latents)
    assert img.shape == (1, 2, 2, 3)
    assert img[0, 0, :, 0].tolist() == [0, 64] and img[0, 0, :, 1].tolist() == [128, 191]
    assert img[0, 0, :, 2].tolist() == [255, 255]  # 3.0 clamps to white


def test_missing_backbones_fail_with_a_clear_error(tiny_backbone_dir, tmp_path, monkeypatch):
    with pytest.raises(BackboneNotFoundError, match="does not exist") as info:
        load_backbone(str(tmp_path / "no-such-model"))
    assert "no-such-model" in str(info.value) and "HF_HOME" in str(info.value)

    partial = tmp_path / "partial"
    shutil.copytree(tiny_backbone_dir, partial, ignore=shutil.ignore_patterns("unet"))
    with pytest.raises(BackboneNotFoundError, match=r"missing component folder\(s\) unet/"):
        load_backbone(str(partial))

    broken = tmp_path / "broken"
    shutil.copytree(tiny_backbone_dir, broken)
    (broken / "unet" / "config.json").unlink()
    with pytest.raises(BackboneNotFoundError, match="cannot load component unet/"):
        load_backbone(str(broken))

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.monotonic()
    with pytest.raises(BackboneNotFoundError) as info:
        load_backbone("hero-bench-tests/no-such-model")
    assert time.monotonic() - start < 10
    message = str(info.value)
    assert "hero-bench-tests/no-such-model" in message and "HF_HUB_OFFLINE" in message and "HF_HOME" in message


def test_device_and_dtype_validation(tiny_backbone_dir):
    with pytest.raises(ConfigError, match="accepted: float32, float16, bfloat16"):
        load_backbone(str(tiny_backbone_dir), dtype="float64")
    with pytest.raises(ConfigError, match="accepted: cpu, cuda, cuda:N, mps"):
        load_backbone(str(tiny_backbone_dir), device="gpu0")
    assert resolve_device("cpu") == torch.device("cpu") and resolve_dtype("bfloat16") == torch.bfloat16
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            resolve_device("cuda:0")


def test_build_tiny_is_deterministic_and_idempotent(tiny_backbone_dir, tmp_path, capsys):
    weights = "unet/diffusion_pytorch_model.safetensors"
    other = tmp_path / "seed1"
    assert main(["build-tiny", "--out", str(other), "--seed", "1"]) == 0
    assert is_complete(other) and build_info(other)["seed"] == 1
    assert (other / weights).read_bytes() != (tiny_backbone_dir / weights).read_bytes()
    assert main(["build-tiny", "--out", str(other), "--seed", "1"]) == 0
    assert "already holds a complete tiny backbone" in capsys.readouterr().out
    assert main(["build-tiny", "--out", str(other), "--seed", "0"]) == 2
    assert "built with seed 1" in capsys.readouterr().err

    # an incomplete folder is refused, then rebuilt with --force: same seed, same bytes
    (other / "unet" / "config.json").unlink()
    assert main(["build-tiny", "--out", str(other), "--seed", "0"]) == 2
    assert "not a complete tiny backbone" in capsys.readouterr().err
    assert main(["build-tiny", "--out", str(other), "--seed", "0", "--force"]) == 0
    for name in (weights, "vae/diffusion_pytorch_model.safetensors", "text_encoder/model.safetensors",
                 "tokenizer/tokenizer.json"):
        assert (other / name).read_bytes() == (tiny_backbone_dir / name).read_bytes(), name
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp folders left behind


def test_sample_cli_writes_an_upscaled_grid(tiny_backbone_dir, tmp_path, capsys):
    out = tmp_path / "grid.png"
    args = ["sample", "--backbone", str(tiny_backbone_dir), "--prompt", "a red circle", "--prompt", "a blue square",
            "--n", "3", "--steps", "2", "--seed", "0", "--no-progress", "--out", str(out)]
    assert main(args) == 0
    grid = np.asarray(Image.open(out))
    assert grid.shape == (2 * 64 + 2, 2 * 64 + 2, 3)  # 3 images -> 2x2 cells of 32 px scaled x2, 2 px gaps
    cell = grid[:64, :64]
    assert np.array_equal(cell[::2, ::2], cell[1::2, 1::2])  # nearest-neighbour: 2x2 blocks

    bb = load_backbone(str(tiny_backbone_dir))
    params = add_lora(bb.unet)
    with torch.no_grad():
        for p in params:
            p.add_(0.2 * torch.randn(p.shape, generator=torch.Generator().manual_seed(0)))
    lora = tmp_path / "adapter.safetensors"
    save_lora(bb.unet, lora)
    with_lora = tmp_path / "grid_lora.png"
    assert main(args[:-1] + [str(with_lora), "--lora", str(lora)]) == 0
    assert not np.array_equal(np.asarray(Image.open(with_lora)), grid)

    assert main(args[:-1] + [str(tmp_path / "grid.bmp")]) == 2
    assert "accepted: .png" in capsys.readouterr().err
    assert main(args[:-1] + [str(out), "--dtype", "int8"]) == 2
    assert "dtype 'int8' is not supported" in capsys.readouterr().err


def test_loading_hides_hub_progress_bars_only_while_loading(tiny_backbone_dir):
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    before = (diffusers_logging.is_progress_bar_enabled(), transformers_logging.is_progress_bar_enabled())
    load_backbone(str(tiny_backbone_dir))
    assert (diffusers_logging.is_progress_bar_enabled(), transformers_logging.is_progress_bar_enabled()) == before


def _with_scheduler_setting(tiny_backbone_dir, folder, **settings):
    shutil.copytree(tiny_backbone_dir, folder)
    config_file = folder / "scheduler" / "scheduler_config.json"
    config = json.loads(config_file.read_text())
    config.update(settings)
    config_file.write_text(json.dumps(config))
    return folder


def test_a_scheduler_that_makes_the_last_log_prob_undefined_is_refused_at_load(tiny_backbone_dir, tmp_path):
    folder = _with_scheduler_setting(tiny_backbone_dir, tmp_path / "alpha-one", set_alpha_to_one=True)
    with pytest.raises(UnsupportedBackboneError, match="set_alpha_to_one=true") as info:
        load_backbone(str(folder))
    assert "accepted: set_alpha_to_one=false" in str(info.value)


def test_a_run_refused_at_load_leaves_nothing_and_the_corrected_command_starts(tiny_backbone_dir, tmp_path, capsys):
    folder = _with_scheduler_setting(tiny_backbone_dir, tmp_path / "alpha-one", set_alpha_to_one=True)
    out = tmp_path / "runs" / "r"
    args = ["train", "--tier", "smoke", "--task", "anomaly", "--method", "base", "--seed", "0", "--budget", "0",
            "--set", "eval.n_images=2", "--set", "sampler.steps=2", "--quiet", "--out", str(out)]
    assert main([*args, "--backbone", str(folder)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "set_alpha_to_one=true" in err[0], err
    assert not out.exists()  # no config.yaml of the refused backbone to clash with the corrected command
    assert main([*args, "--backbone", str(tiny_backbone_dir)]) == 0
    assert (out / "DONE.json").exists()


def test_set_alpha_to_one_really_makes_the_last_step_log_prob_nan(tiny_backbone_dir, tmp_path, monkeypatch):
    # why the check above exists: without it, sampling runs and the last step's log-prob is NaN
    from hero_bench.diffusion import backbone as backbone_module
    from hero_bench.diffusion.sampler import SamplerConfig, initial_noise, sample_trajectories

    folder = _with_scheduler_setting(tiny_backbone_dir, tmp_path / "alpha-one", set_alpha_to_one=True)
    monkeypatch.setattr(backbone_module, "_check_scheduler", lambda scheduler, source: None)
    bb = load_backbone(str(folder))
    generator = torch.Generator().manual_seed(0)
    traj = sample_trajectories(bb, ["a red circle"], initial_noise(bb, 1, generator),
                               SamplerConfig(steps=3, eta=1.0, guidance_scale=2.0, batch_size=1), generator)
    assert torch.isfinite(traj.log_probs[:, :-1]).all()
    assert torch.isnan(traj.log_probs[:, -1]).all()
