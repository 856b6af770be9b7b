"""Diffusion core: backbone loading, the DDIM step with log-prob, the trajectory sampler, LoRA.

Import from the submodules (``hero_bench.diffusion.sampler`` ...) or from here.
"""

from hero_bench.diffusion.backbone import Backbone, load_backbone
from hero_bench.diffusion.ddim import ddim_step_with_logprob
from hero_bench.diffusion.lora import (
    LoraConfig,
    add_lora,
    disable_lora,
    load_lora,
    load_lora_state_dict,
    lora_state_dict,
    save_lora,
)
from hero_bench.diffusion.sampler import (
    SamplerConfig,
    Trajectory,
    initial_noise,
    sample_trajectories,
    step_log_prob,
)
from hero_bench.diffusion.tiny import build_tiny_backbone

__all__ = [
    "Backbone",
    "LoraConfig",
    "SamplerConfig",
    "Trajectory",
    "add_lora",
    "build_tiny_backbone",
    "ddim_step_with_logprob",
    "disable_lora",
    "initial_noise",
    "load_backbone",
    "load_lora",
    "load_lora_state_dict",
    "lora_state_dict",
    "sample_trajectories",
    "save_lora",
    "step_log_prob",
]
