"""The ShapesWorld text-to-image model: SD's architecture family, shrunk to 16x16 pixel space.

Components (all stock diffusers / transformers classes, built from configs):
- tokenizer: word-level over the caption vocabulary (``toyworld.tokenizer``);
- text encoder: ``CLIPTextModel`` (causal transformer, trained from scratch with the UNet);
- UNet: ``UNet2DConditionModel`` with cross-attention, in/out channels 3, operating directly on RGB
  images scaled to [-1, 1] (no VAE: at 16x16 a VAE would cost more than it saves);
- scheduler: ``DDIMScheduler``; the shipped model predicts v on a zero-terminal-SNR schedule with
  trailing spacing (``SchedulerConfig``; its first two training stages predicted epsilon).

Saved as a diffusers folder ``unet/ text_encoder/ tokenizer/ scheduler/ model_index.json`` with
no ``vae/``, which ``hero_bench.diffusion.backbone.load_backbone`` reads as a pixel-space backbone.

Why the linear beta schedule (1e-4 -> 0.02, DDPM's): at 16 px a flat-coloured scene's mean colour
is a strong, low-frequency signal.  DDIM with 20 "leading" steps starts sampling at t = 951 from
pure noise, so the schedule must have destroyed that signal by t = 951.  Measured
``sqrt(alpha_bar_951)``: linear 0.010, squaredcos_cap_v2 0.075, scaled_linear (SD's) 0.043.  The
per-image mean of the noise over 3x16x16 values has std 1/sqrt(768) = 0.036, so with the cosine or
SD schedule the model learns to read the background colour out of x_951 (0.075 x |mean| > 0.036),
a cue that pure-noise sampling never provides; with the linear schedule the leak (< 0.01) is
below the noise.  The shipped model's last stages go further and rescale the schedule so that the
last step is pure noise (``SchedulerConfig.rescale_betas_zero_snr``).  ``clip_sample`` is on because
pixel-space x0 predictions live in [-1, 1].
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from hero_bench.errors import ConfigError
from hero_bench.toyworld.tokenizer import DEFAULT_MAX_LENGTH, build_tokenizer, load_tokenizer, save_tokenizer


@dataclass(frozen=True)
class TextEncoderConfig:
    """Size of the CLIP-style text encoder (trained from scratch, jointly with the UNet)."""

    hidden_size: int = 64
    """Width of the token embeddings and of the UNet's cross-attention context."""
    num_hidden_layers: int = 2
    """Transformer layers; captions are short and the vocabulary tiny, two suffice."""
    num_attention_heads: int = 4
    """Attention heads per layer (hidden_size must be divisible by it)."""
    intermediate_size: int = 256
    """MLP width inside each transformer layer."""
    model_max_length: int = DEFAULT_MAX_LENGTH
    """Tokens per prompt including <bos>/<eos>; also the encoder's max_position_embeddings."""


@dataclass(frozen=True)
class UNetConfig:
    """Size of the pixel-space UNet2DConditionModel."""

    block_out_channels: tuple[int, ...] = (32, 64)
    """Channels per resolution level (16x16, 8x8); measured at 0.43 s per batch-64 training step on 2 cores."""
    layers_per_block: int = 1
    """ResNet (+ attention) layers per level."""
    down_block_types: tuple[str, ...] = ("CrossAttnDownBlock2D", "DownBlock2D")
    """Cross-attention at full resolution (where positions and shapes are decided) and in the 8x8 mid block."""
    up_block_types: tuple[str, ...] = ("UpBlock2D", "CrossAttnUpBlock2D")
    """Mirror of down_block_types."""
    attention_head_dim: int = 4
    """diffusers' name for the number of attention heads per transformer block."""
    norm_num_groups: int = 8
    """GroupNorm groups (every entry of block_out_channels must be divisible by it)."""


@dataclass(frozen=True)
class SchedulerConfig:
    """DDIM noise schedule (see the module docstring for why linear)."""

    num_train_timesteps: int = 1000
    """Diffusion steps during training."""
    beta_schedule: str = "linear"
    """diffusers beta schedule name: linear | scaled_linear | squaredcos_cap_v2."""
    beta_start: float = 0.0001
    """First beta (ignored by squaredcos_cap_v2)."""
    beta_end: float = 0.02
    """Last beta (ignored by squaredcos_cap_v2)."""
    clip_sample: bool = True
    """Clip predicted x0 to [-1, 1] during sampling (pixel space)."""
    prediction_type: str = "epsilon"
    """What the UNet predicts: ``epsilon`` (the noise) or ``v_prediction`` (sqrt(a)*eps - sqrt(1-a)*x0).

    At the first DDIM step (t = 951, sqrt(alpha_bar) = 0.010) an epsilon model's x0 estimate divides its
    error by 0.010, so clipping saturates it; v-prediction keeps the x0 estimate well conditioned at
    every noise level.  On ShapesWorld it raised success at eta 1 but did not mend eta < 1
    (MODEL_CARD.md, "Why the last stages")."""
    rescale_betas_zero_snr: bool = False
    """Rescale the betas so that the last training step is pure noise (alpha_bar_T = 0).

    A schedule whose last step keeps a trace of the image teaches the model to read the image's mean
    colour from that trace; sampling starts from noise that has none, and deterministic sampling
    (eta 0) turns the noise's own chance mean into the scene's background (the stage-3 model drifted
    to dark backgrounds with 100 deterministic steps).  Needs v-prediction (at
    alpha_bar = 0 the noise says nothing about x0) and ``trailing`` spacing (so that sampling starts at
    the last step, where the noise really is pure)."""
    timestep_spacing: str = "leading"
    """diffusers' DDIM timestep spacing: ``leading`` (SD 1.5: 20 steps start at t = 951) or ``trailing``
    (20 steps start at t = 999)."""

    def __post_init__(self):
        if self.timestep_spacing not in ("leading", "trailing"):
            raise ConfigError(f"model.scheduler.timestep_spacing={self.timestep_spacing!r} is not accepted; "
                              "accepted: leading, trailing")
        if self.rescale_betas_zero_snr and (self.prediction_type != "v_prediction"
                                            or self.timestep_spacing != "trailing"):
            raise ConfigError("model.scheduler.rescale_betas_zero_snr=true needs prediction_type=v_prediction and "
                              "timestep_spacing=trailing (at zero SNR only v says anything about the image)")


@dataclass(frozen=True)
class ModelConfig:
    """The whole ShapesWorld model: text encoder, UNet and scheduler."""

    image_size: int = 16
    """Image side in pixels (the UNet's sample_size); must match scenes.IMAGE_SIZE for training."""
    text_encoder: TextEncoderConfig = TextEncoderConfig()
    """Text encoder size."""
    unet: UNetConfig = UNetConfig()
    """UNet size."""
    scheduler: SchedulerConfig = SchedulerConfig()
    """Noise schedule."""


@dataclass
class Components:
    """The four parts of a pixel-space backbone, as built or loaded."""

    tokenizer: Any
    text_encoder: Any
    unet: Any
    scheduler: Any


def build_components(cfg: ModelConfig = ModelConfig(), vocab: Sequence[str] | None = None, seed: int = 0) -> Components:
    """Build freshly initialised components; weights are a deterministic function of ``seed``."""
    # deferred: torch, diffusers, transformers (the toy modules import without them)
    import torch
    from diffusers import DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    te = cfg.text_encoder
    tokenizer = build_tokenizer(vocab, model_max_length=te.model_max_length)
    # Initialise under a private generator: seeding the global RNG would be a side effect on callers.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        text_encoder = CLIPTextModel(CLIPTextConfig(
            vocab_size=len(tokenizer.get_vocab()), hidden_size=te.hidden_size, intermediate_size=te.intermediate_size,
            num_hidden_layers=te.num_hidden_layers, num_attention_heads=te.num_attention_heads,
            max_position_embeddings=te.model_max_length, projection_dim=te.hidden_size,
            pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
        ))
        u = cfg.unet
        unet = UNet2DConditionModel(
            sample_size=cfg.image_size,
            in_channels=3,
            out_channels=3,
            block_out_channels=tuple(u.block_out_channels),
            layers_per_block=u.layers_per_block,
            down_block_types=tuple(u.down_block_types),
            up_block_types=tuple(u.up_block_types),
            cross_attention_dim=te.hidden_size,
            attention_head_dim=u.attention_head_dim,
            norm_num_groups=u.norm_num_groups,
        )
    s = cfg.scheduler
    scheduler = DDIMScheduler(
        num_train_timesteps=s.num_train_timesteps,
        beta_schedule=s.beta_schedule,
        beta_start=s.beta_start,
        beta_end=s.beta_end,
        clip_sample=s.clip_sample,
        clip_sample_range=1.0,
        prediction_type=s.prediction_type,
        # SD 1.5's conventions, so the toy tier exercises exactly the paper tier's sampler code path
        # (set_alpha_to_one=False keeps the last DDIM step's variance > 0, so its log-prob is finite).
        set_alpha_to_one=False,
        steps_offset=1,
        timestep_spacing=s.timestep_spacing,
        rescale_betas_zero_snr=s.rescale_betas_zero_snr,
    )
    return Components(tokenizer, text_encoder, unet, scheduler)


def encode_prompts(tokenizer, text_encoder, prompts: Sequence[str]):
    """SD-style prompt encoding: pad to model_max_length, no attention mask, last hidden state [B, L, D]."""
    ids = tokenizer(
        list(prompts),
        padding="max_length",
        max_length=tokenizer.model_max_length,
        truncation=True,
        return_tensors="pt",
    ).input_ids.to(next(text_encoder.parameters()).device)
    return text_encoder(ids)[0]


def parameter_counts(components: Components) -> dict[str, int]:
    """Number of parameters of the text encoder and the UNet."""
    return {
        "text_encoder": sum(p.numel() for p in components.text_encoder.parameters()),
        "unet": sum(p.numel() for p in components.unet.parameters()),
    }


def model_index() -> dict[str, Any]:
    """``model_index.json`` content: a Stable-Diffusion-style index whose vae is absent (pixel space)."""
    # deferred: diffusers (1.6 s; only its version is read here)
    import diffusers

    return {
        "_class_name": "StableDiffusionPipeline",
        "_diffusers_version": diffusers.__version__,
        "unet": ["diffusers", "UNet2DConditionModel"],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "PreTrainedTokenizerFast"],
        "scheduler": ["diffusers", "DDIMScheduler"],
        # null components: diffusers' convention for "this pipeline has none" (pixel space, no checker)
        "vae": [None, None],
        "safety_checker": [None, None],
        "feature_extractor": [None, None],
        "requires_safety_checker": False,
    }


def save_components(components: Components, out_dir: str | os.PathLike, extra_files: dict[str, str] | None = None) -> Path:
    """Write a diffusers folder atomically: build it in a temp dir next to ``out_dir``, then rename.

    ``extra_files`` maps file names (inside the folder) to text content, e.g. ``training_config.json``.
    An existing ``out_dir`` is replaced only once the new folder is complete.
    """
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    try:
        components.unet.save_pretrained(tmp / "unet", safe_serialization=True)
        components.text_encoder.save_pretrained(tmp / "text_encoder", safe_serialization=True)
        save_tokenizer(components.tokenizer, tmp / "tokenizer")
        components.scheduler.save_pretrained(tmp / "scheduler")
        (tmp / "model_index.json").write_text(json.dumps(model_index(), indent=2) + "\n")
        for name, text in (extra_files or {}).items():
            (tmp / name).write_text(text)
        for path in tmp.rglob("*"):
            if path.is_file():
                with open(path, "rb") as fh:
                    os.fsync(fh.fileno())
        old = None
        if out_dir.exists():
            old = out_dir.with_name(f".{out_dir.name}.old")
            if old.exists():
                shutil.rmtree(old)
            os.replace(out_dir, old)
        os.replace(tmp, out_dir)
        if old is not None:
            shutil.rmtree(old)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return out_dir


def load_components(folder: str | os.PathLike) -> Components:
    """Load the four components from a saved folder (the training side; users go through load_backbone)."""
    # deferred: diffusers, transformers (the toy modules import without them)
    from diffusers import DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel

    folder = Path(folder)
    return Components(
        tokenizer=load_tokenizer(folder, "tokenizer"),
        text_encoder=CLIPTextModel.from_pretrained(folder / "text_encoder", local_files_only=True),
        unet=UNet2DConditionModel.from_pretrained(folder / "unet", local_files_only=True),
        scheduler=DDIMScheduler.from_pretrained(folder / "scheduler", local_files_only=True),
    )


def config_dict(cfg: ModelConfig) -> dict[str, Any]:
    """Plain dict of a ModelConfig (tuples as lists) for JSON."""
    return json.loads(json.dumps(dataclasses.asdict(cfg)))
