"""scripts/gpu_check.py at its reduced size on the CPU: one epoch of each method on a random
SD-1.5-shaped model (tiny channels, 64 px, 2 steps), and the sampler against diffusers' own
pipeline on the same model and noise."""

from __future__ import annotations

import json

import pytest
from conftest import load_script

pytestmark = [pytest.mark.usefixtures("one_torch_thread"), pytest.mark.slow]


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu_check") / "gpu_check_reduced.json"
    assert load_script("gpu_check").main(["--size", "reduced", "--device", "cpu", "--out", str(out)]) == 0
    return json.loads(out.read_text())


def test_report_fields(report):
    assert report["device"] == "cpu" and report["device_name"].startswith("cpu")
    assert report["size"] == "reduced" and report["dtype"] == "float32" and report["lora_rank"] == 4
    assert set(report["parameters"]) == {"unet", "vae", "text_encoder"}
    assert set(report["methods"]) == {"hero", "ddpo", "d3po"}
    for method, row in report["methods"].items():
        assert row["method"] == method and row["task"] == "blue_rose"
        assert row["images"] == 2 and row["sampler_steps"] == 2 and row["eval_images"] == 2
        assert row["epoch_s"] > 0 and row["epoch_cpu_s"] > 0
        assert row["phases_s"]["sample"] > 0 and row["phases_s"]["update"] > 0
        assert row["peak_gpu_memory_bytes"] is None  # no CUDA: no GPU memory to report
        assert row["training_calls"] == row["unet_forward_calls"]["update/grad"] > 0  # the update trained


def test_sampler_agrees_with_diffusers_pipeline(report):
    c = report["compare_diffusers"]
    assert c["images"] == 2 and c["steps"] == 2 and c["eta"] == 1.0
    # float32 on both sides, the same UNet calls ([uncond; cond] batch), the same DDIM step formula
    # and the same noise: only the order of the step's arithmetic differs
    assert c["agrees"] and c["max_abs_diff_latents"] <= c["latent_tolerance"]
    assert c["latent_tolerance"] < 1e-4
    assert c["max_abs_diff_images_uint8"] <= 1  # rounding to uint8 at a boundary
    # the log-prob of diffusers' steps under the sampler's formula is the sampler's own log-prob
    assert c["max_abs_diff_log_prob"] <= 1e-3 * max(1.0, c["max_abs_log_prob"])
    assert c["ours_s"] > 0 and c["diffusers_s"] > 0
