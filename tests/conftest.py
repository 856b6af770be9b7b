"""Shared fixtures: the tiny random SD-architecture backbone, built once per test session."""

from __future__ import annotations

import pytest
import torch

# the machine is shared; more threads than cores only adds contention
torch.set_num_threads(2)


@pytest.fixture(scope="session")
def tiny_backbone_dir(tmp_path_factory):
    """Path of a tiny random backbone (diffusers layout, 32 px images), built once per session."""
    from hero_bench.diffusion.tiny import build_tiny_backbone

    return build_tiny_backbone(tmp_path_factory.mktemp("backbones") / "tiny", seed=0)


@pytest.fixture(scope="session")
def tiny_backbone(tiny_backbone_dir):
    """The tiny backbone loaded on CPU in float32 (shared: tests must not leave LoRA attached)."""
    from hero_bench.diffusion.backbone import load_backbone

    return load_backbone(str(tiny_backbone_dir))
