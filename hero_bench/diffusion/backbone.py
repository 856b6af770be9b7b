"""Loading a text-to-image diffusion backbone (tokenizer, text encoder, UNet, DDIM scheduler, VAE).

A backbone is a diffusers-format folder (``tokenizer/ text_encoder/ unet/ scheduler/`` and an
optional ``vae/``) or a Hugging Face hub id whose files are already in the local cache (or can be
downloaded when the machine is online).  Without ``vae/`` the backbone works in pixel space: its
"latents" are images in [-1, 1].

Every way this can go wrong that a user can cause (no such folder, a folder missing a component,
a hub id that is not cached while offline, an unknown device or dtype) raises a
``HeroBenchError`` subclass whose message names the problem and how to fix it, never a traceback
from the hub client.
"""

from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch

from hero_bench.errors import BackboneNotFoundError, ConfigError, UnsupportedBackboneError

PACKAGE_PREFIX = "hero_bench:"
"""A backbone source ``hero_bench:REL`` names the folder REL inside the installed package (the
shipped ShapesWorld model), so config.yaml, its hash and the eval rows do not depend on where the
checkout lives; ``resolve_backbone`` turns it into a path when loading."""
# the components a backbone folder must hold; ``vae`` is optional (absent = pixel space)
REQUIRED_COMPONENTS = ("tokenizer", "text_encoder", "unet", "scheduler")
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
DEVICE_PATTERN = re.compile(r"^(cpu|mps|cuda(:\d+)?)$")
HUB_ID_PATTERN = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
# only what the backbone loads: a hub snapshot of SD 1.5 also holds multi-GB .ckpt files we never use
HUB_ALLOW_PATTERNS = [
    "model_index.json",
    "tokenizer/*",
    "*/config.json",
    "scheduler/scheduler_config.json",
    "*/diffusion_pytorch_model.safetensors",
    "text_encoder/model.safetensors",
]
HOW_TO_PROVIDE = (
    "Provide the backbone as a local diffusers-format folder (tokenizer/, text_encoder/, unet/, "
    "scheduler/, optional vae/), or pre-populate the Hugging Face cache (HF_HOME / HF_HUB_CACHE) "
    "with the hub id on a machine with network access (`hf download ID`) and run with "
    "HF_HUB_OFFLINE=1; `hero-bench build-tiny --out DIR` builds a small random test backbone."
)


@dataclass
class Backbone:
    """The parts of a text-to-image diffusion model the sampler and the algorithms use."""

    tokenizer: Any
    text_encoder: Any
    unet: Any
    scheduler: Any  # diffusers.DDIMScheduler
    vae: Any | None  # diffusers.AutoencoderKL; None = pixel space, latents are images in [-1, 1]
    source: str
    device: torch.device
    dtype: torch.dtype
    latent_shape: tuple[int, int, int]  # (C, H, W) of the UNet's sample
    image_size: int  # decoded image side in pixels

    @property
    def max_length(self) -> int:
        """Token sequence length prompts are padded to (as Stable Diffusion does)."""
        limit = int(self.text_encoder.config.max_position_embeddings)
        tok_max = getattr(self.tokenizer, "model_max_length", None) or limit
        return min(int(tok_max), limit)

    @torch.no_grad()
    def encode_prompts(self, prompts: Sequence[str]) -> torch.Tensor:
        """Text-encoder hidden states ``[B, L, D]`` for ``prompts``, padded to ``max_length``."""
        if isinstance(prompts, str):
            raise TypeError("encode_prompts takes a sequence of prompts, not a single string")
        ids = self.tokenizer(
            list(prompts),
            padding="max_length",
            max_length=self.max_length,
            truncation=True,
            return_tensors="pt",
        ).input_ids.to(self.device)
        # Stable Diffusion conditions on the last hidden state, without an attention mask
        return self.text_encoder(ids)[0]

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> np.ndarray:
        """Decode latents to ``uint8`` images ``[B, H, W, 3]``."""
        if self.vae is None:
            images = latents.float()
        else:
            scaled = latents.to(device=self.device, dtype=self.vae.dtype) / self.vae.config.scaling_factor
            images = self.vae.decode(scaled).sample.float()
        # [-1, 1] -> [0, 255], rounded the way diffusers' image processor does
        images = ((images / 2 + 0.5).clamp(0, 1) * 255).round().to(torch.uint8)
        return images.permute(0, 2, 3, 1).cpu().numpy()


def resolve_device(device: str | torch.device) -> torch.device:
    """Validate a device string (cpu, cuda, cuda:N, mps) and check that it is available."""
    text = str(device)
    if not DEVICE_PATTERN.match(text):
        raise ConfigError(f"device {text!r} is not supported; accepted: cpu, cuda, cuda:N, mps")
    if text.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"device {text!r} requested but CUDA is not available here; use device 'cpu'")
        index = int(text.split(":")[1]) if ":" in text else 0
        if index >= torch.cuda.device_count():
            raise ConfigError(
                f"device {text!r} requested but only {torch.cuda.device_count()} CUDA device(s) exist"
            )
    if text == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("device 'mps' requested but MPS is not available here; use device 'cpu'")
    return torch.device(text)


def resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    """Validate a dtype name (float32, float16, bfloat16)."""
    if isinstance(dtype, torch.dtype) and dtype in DTYPES.values():
        return dtype
    if str(dtype) in DTYPES:
        return DTYPES[str(dtype)]
    raise ConfigError(f"dtype {dtype!r} is not supported; accepted: {', '.join(DTYPES)}")


def resolve_backbone(source: str) -> str:
    """A backbone source as load_backbone takes it: ``hero_bench:REL`` -> the folder inside the package."""
    if source.startswith(PACKAGE_PREFIX):
        return str(Path(__file__).resolve().parent.parent / source[len(PACKAGE_PREFIX):])
    return source


def _hub_offline() -> bool:
    # read at call time: huggingface_hub reads HF_HUB_OFFLINE only once, at import
    # deferred: huggingface_hub (0.15 s; only resolving a hub id needs it)
    from huggingface_hub import constants

    flags = (os.environ.get("HF_HUB_OFFLINE"), os.environ.get("TRANSFORMERS_OFFLINE"))
    return constants.HF_HUB_OFFLINE or any(f and f.strip().lower() in ("1", "true", "yes", "on") for f in flags)


def _looks_like_path(source: str) -> bool:
    # a hub id is exactly "owner/name"; anything else with separators is meant as a folder
    return source.startswith((".", "/", "~")) or source.count("/") > 1 or "\\" in source


def resolve_source(source: str) -> Path:
    """Return the local folder holding backbone ``source`` (a folder path or a hub id)."""
    path = Path(source).expanduser()
    if path.exists():
        if not path.is_dir():
            raise BackboneNotFoundError(f"backbone {source!r} is a file, not a diffusers folder. {HOW_TO_PROVIDE}")
        return path
    if _looks_like_path(source) or not HUB_ID_PATTERN.match(source):
        raise BackboneNotFoundError(f"backbone folder {source!r} does not exist. {HOW_TO_PROVIDE}")
    return _hub_snapshot(source)


def _hub_snapshot(repo_id: str) -> Path:
    # deferred: huggingface_hub (0.15 s; only resolving a hub id needs it)
    from huggingface_hub import snapshot_download

    # The cache first, so a pre-populated cache never touches the network.  The hub client raises
    # many exception types (offline mode, missing cache entries, HTTP and connection errors); for the
    # user they all mean "this model is not available here", so they are reported as one error.
    try:
        return Path(snapshot_download(repo_id, allow_patterns=HUB_ALLOW_PATTERNS, local_files_only=True))
    except Exception:  # noqa: BLE001 - see above
        pass
    if _hub_offline():
        raise BackboneNotFoundError(
            f"backbone {repo_id!r} is not a local folder and is not in the Hugging Face cache, "
            f"and HF_HUB_OFFLINE is set so it cannot be downloaded. {HOW_TO_PROVIDE}"
        )
    try:
        return Path(snapshot_download(repo_id, allow_patterns=HUB_ALLOW_PATTERNS))
    except Exception as exc:  # noqa: BLE001 - see above
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BackboneNotFoundError(
            f"backbone {repo_id!r} is not a local folder, not in the Hugging Face cache, and could not "
            f"be downloaded ({type(exc).__name__}: {reason}). {HOW_TO_PROVIDE}"
        ) from None


def _check_components(folder: Path, source: str) -> None:
    missing = [name for name in REQUIRED_COMPONENTS if not (folder / name).is_dir()]
    if missing:
        raise BackboneNotFoundError(
            f"backbone {source!r} ({folder}) is missing component folder(s) {', '.join(m + '/' for m in missing)}; "
            f"a backbone folder needs {', '.join(c + '/' for c in REQUIRED_COMPONENTS)} and optionally vae/. "
            f"{HOW_TO_PROVIDE}"
        )


def _check_scheduler(scheduler, source: str) -> None:
    # With set_alpha_to_one the last DDIM step goes to alpha_prev = 1, where the step's variance is
    # zero for every eta: the sample is deterministic, its Gaussian log-prob is NaN, and the PPO
    # ratios and DPO terms of that step with it. SD 1.5 ships false; diffusers' DDIMScheduler
    # defaults to true, so a hand-made scheduler config can carry it.
    if scheduler.config.get("set_alpha_to_one", False):
        raise UnsupportedBackboneError(
            f"backbone {source!r}: scheduler/scheduler_config.json sets set_alpha_to_one=true, which makes the "
            "last sampling step deterministic and its log-probability undefined (NaN); accepted: "
            "set_alpha_to_one=false (as Stable Diffusion 1.5 ships)"
        )


def _load_component(name: str, source: str, loader, *args, **kwargs):
    try:
        return loader(*args, **kwargs)
    except (OSError, ValueError, KeyError, EnvironmentError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BackboneNotFoundError(
            f"backbone {source!r}: cannot load component {name}/ ({type(exc).__name__}: {first}). {HOW_TO_PROVIDE}"
        ) from None


@contextlib.contextmanager
def quiet_hf_progress() -> Iterator[None]:
    """Hide transformers'/diffusers' per-file progress bars (loading, saving) inside the block.

    They would print into every training job's log; the previous setting is restored afterwards.
    """
    # deferred: diffusers, transformers (2 s; only loading or saving a model needs them)
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    states = [(m, m.is_progress_bar_enabled()) for m in (diffusers_logging, transformers_logging)]
    for module, _ in states:
        module.disable_progress_bar()
    try:
        yield
    finally:
        for module, enabled in states:
            if enabled:
                module.enable_progress_bar()


def load_backbone(source: str, device: str = "cpu", dtype: str = "float32") -> Backbone:
    """Load a backbone from a local diffusers folder or a hub id onto ``device`` in ``dtype``."""
    torch_device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype)
    source = str(source)
    folder = resolve_source(source)
    _check_components(folder, source)

    with quiet_hf_progress():
        return _load_folder(folder, source, torch_device, torch_dtype)


def _load_folder(folder: Path, source: str, torch_device: torch.device, torch_dtype: torch.dtype) -> Backbone:
    # deferred: diffusers, transformers (2 s; only loading a model needs them)
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import AutoTokenizer, CLIPTextModel

    tokenizer = _load_component("tokenizer", source, AutoTokenizer.from_pretrained, folder / "tokenizer")
    if tokenizer.pad_token is None:
        raise BackboneNotFoundError(
            f"backbone {source!r}: its tokenizer has no pad token; prompts are padded to a fixed length, "
            "so the tokenizer must define pad_token"
        )
    text_encoder = _load_component(
        "text_encoder", source, CLIPTextModel.from_pretrained, folder / "text_encoder", dtype=torch_dtype
    )
    unet = _load_component(
        "unet", source, UNet2DConditionModel.from_pretrained, folder / "unet", torch_dtype=torch_dtype
    )
    # SD 1.5 ships a PNDM scheduler config; the DDIM scheduler reads the same beta schedule from it
    scheduler_config = _load_component("scheduler", source, DDIMScheduler.load_config, folder / "scheduler")
    scheduler = DDIMScheduler.from_config(scheduler_config)
    _check_scheduler(scheduler, source)
    vae = None
    if (folder / "vae").is_dir():
        vae = _load_component("vae", source, AutoencoderKL.from_pretrained, folder / "vae", torch_dtype=torch_dtype)

    for module in (text_encoder, unet, vae):
        if module is not None:
            module.requires_grad_(False)
            module.to(torch_device)
            module.eval()

    sample_size = unet.config.sample_size
    side = sample_size if isinstance(sample_size, int) else int(sample_size[0])
    channels = int(unet.config.in_channels)
    if vae is None:
        if channels != 3:
            raise BackboneNotFoundError(
                f"backbone {source!r} has no vae/ (pixel space) but its UNet has {channels} input channels; "
                "a pixel-space UNet needs 3 (RGB), a latent UNet needs a vae/ folder"
            )
        image_size = side
    else:
        image_size = side * 2 ** (len(vae.config.block_out_channels) - 1)
    return Backbone(tokenizer=tokenizer, text_encoder=text_encoder, unet=unet, scheduler=scheduler, vae=vae,
                    source=source, device=torch_device, dtype=torch_dtype, latent_shape=(channels, side, side),
                    image_size=image_size)
