"""LoRA adapters: parameter count, frozen base, fp32 adapters, save/load round trip, disabling."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from hero_bench.diffusion.backbone import load_backbone
from hero_bench.diffusion.lora import (
    LoraConfig,
    LoraMismatchError,
    add_lora,
    disable_lora,
    load_lora,
    load_lora_state_dict,
    lora_state_dict,
    save_lora,
)
from hero_bench.errors import ConfigError


@pytest.fixture
def backbone(tiny_backbone_dir):
    return load_backbone(str(tiny_backbone_dir))


def unet_out(unet, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 4, 16, 16, generator=g)
    emb = torch.randn(2, 77, 32, generator=g)
    with torch.no_grad():
        return unet(x, torch.tensor([901, 1]), encoder_hidden_states=emb).sample


def perturb(params, seed: int = 0, scale: float = 0.05) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in params:
            p.add_(scale * torch.randn(p.shape, generator=g))


def test_trainable_count_and_frozen_base(backbone):
    unet = backbone.unet
    params = add_lora(unet, LoraConfig())
    assert sum(p.numel() for p in params) == 15_360  # docs/stack.md, tiny UNet, rank 4
    trainable = {n for n, p in unet.named_parameters() if p.requires_grad}
    assert trainable and all(".lora_" in n for n in trainable)
    assert {id(p) for p in params} == {id(p) for n, p in unet.named_parameters() if n in trainable}


def test_optimizer_step_changes_only_the_adapter(backbone):
    unet = backbone.unet
    params = add_lora(unet)
    base_before = {n: p.detach().clone() for n, p in unet.named_parameters() if ".lora_" not in n}
    lora_before = [p.detach().clone() for p in params]
    optimizer = torch.optim.AdamW(params, lr=1e-2)
    unet_out_grad = unet(torch.randn(2, 4, 16, 16), 500, encoder_hidden_states=torch.randn(2, 77, 32)).sample
    unet_out_grad.pow(2).mean().backward()
    optimizer.step()
    for n, p in unet.named_parameters():
        if ".lora_" not in n:
            assert not p.requires_grad and torch.equal(p, base_before[n]), n
    assert any(not torch.equal(p, b) for p, b in zip(params, lora_before))


def test_adapter_starts_as_identity_and_init_is_seeded(backbone, tiny_backbone_dir):
    before = unet_out(backbone.unet)
    state_rng = torch.get_rng_state()
    add_lora(backbone.unet, seed=3)
    assert torch.equal(torch.get_rng_state(), state_rng)  # the caller's global RNG is untouched
    torch.testing.assert_close(unet_out(backbone.unet), before)  # B = 0 at init: adds exact zeros
    a = lora_state_dict(backbone.unet)
    other = load_backbone(str(tiny_backbone_dir))
    add_lora(other.unet, seed=3)
    b = lora_state_dict(other.unet)
    third = load_backbone(str(tiny_backbone_dir))
    add_lora(third.unet, seed=4)
    c = lora_state_dict(third.unet)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a if "lora_A" in k)
    # gaussian init: A ~ N(0, 1/r^2), B = 0
    a_all = torch.cat([v.flatten() for k, v in a.items() if "lora_A" in k])
    assert abs(a_all.std().item() - 0.25) < 0.02
    assert all(v.abs().sum() == 0 for k, v in a.items() if "lora_B" in k)


def test_save_load_round_trip_reproduces_outputs(backbone, tiny_backbone_dir, tmp_path):
    params = add_lora(backbone.unet)
    perturb(params)
    trained = unet_out(backbone.unet)
    path = tmp_path / "adapter.safetensors"
    save_lora(backbone.unet, path)
    stored = load_file(str(path))
    assert set(stored) == set(lora_state_dict(backbone.unet)) and all("lora_" in k for k in stored)
    assert sum(v.numel() for v in stored.values()) == 15_360  # adapter only, no base weights

    fresh = load_backbone(str(tiny_backbone_dir))
    assert not torch.allclose(unet_out(fresh.unet), trained)
    load_lora(fresh.unet, path)  # adds the adapter with the config recorded in the file
    # bitwise: the same adapter weights (a safetensors round trip is exact) on the same batch
    torch.testing.assert_close(unet_out(fresh.unet), trained, rtol=0, atol=0)


def test_disable_lora_runs_the_base_model_and_restores(backbone):
    base = unet_out(backbone.unet)
    params = add_lora(backbone.unet)
    perturb(params)
    adapted = unet_out(backbone.unet)
    assert not torch.allclose(adapted, base)
    # disabled adapters are skipped: the base layers alone on the same batch, so equal in fact
    # (float32 default tolerances)
    with disable_lora(backbone.unet):
        torch.testing.assert_close(unet_out(backbone.unet), base)
        with disable_lora(backbone.unet):
            torch.testing.assert_close(unet_out(backbone.unet), base)
        torch.testing.assert_close(unet_out(backbone.unet), base)  # nested exit keeps it disabled
    torch.testing.assert_close(unet_out(backbone.unet), adapted)
    assert all(p.requires_grad for p in params)


def test_adapter_is_float32_on_a_bfloat16_base(tiny_backbone_dir):
    bb = load_backbone(str(tiny_backbone_dir), dtype="bfloat16")
    params = add_lora(bb.unet)
    assert all(p.dtype == torch.float32 for p in params)
    assert bb.unet.conv_in.weight.dtype == torch.bfloat16
    out = bb.unet(torch.randn(1, 4, 16, 16, dtype=torch.bfloat16), 500,
                  encoder_hidden_states=torch.randn(1, 77, 32, dtype=torch.bfloat16)).sample
    out.float().pow(2).mean().backward()
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in params)


def test_mismatched_weights_are_rejected(backbone, tiny_backbone_dir, tmp_path):
    add_lora(backbone.unet, LoraConfig(rank=2))
    path = tmp_path / "rank2.safetensors"
    save_lora(backbone.unet, path)
    other = load_backbone(str(tiny_backbone_dir))
    add_lora(other.unet, LoraConfig(rank=4))
    with pytest.raises(LoraMismatchError, match="shape"):
        load_lora(other.unet, path)
    state = lora_state_dict(other.unet)
    del state[next(iter(state))]
    with pytest.raises(LoraMismatchError, match="missing"):
        load_lora_state_dict(other.unet, state)


def test_lora_config_validation():
    with pytest.raises(ConfigError, match="rank"):
        LoraConfig(rank=0)
    with pytest.raises(ConfigError, match="accepted: gaussian, default"):
        LoraConfig(init="pissa")
    peft_cfg = LoraConfig().to_peft()
    assert peft_cfg.r == 4 and peft_cfg.lora_alpha == 4 and peft_cfg.init_lora_weights == "gaussian"
    assert set(peft_cfg.target_modules) == {"to_q", "to_k", "to_v", "to_out.0"}
