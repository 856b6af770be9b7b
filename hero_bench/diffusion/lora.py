"""LoRA adapters on the UNet's attention projections (peft), and saving/loading them.

The released DDPO/D3PO/HERO code uses diffusers' legacy LoRA attention processors (rank 4, scale 1,
down-projection ~ N(0, 1/r²), up-projection 0, on to_q/to_k/to_v/to_out); peft's
``LoraConfig(r=4, lora_alpha=4, init_lora_weights="gaussian")`` is the same computation
(docs/algorithms.md §1.3).  Adapter parameters are kept in float32 even when the base model is
float16/bfloat16, so small updates are not lost to rounding.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from hero_bench.config import from_dict, to_dict
from hero_bench.errors import ConfigError, HeroBenchError
from hero_bench.io import atomic_path

ADAPTER_NAME = "default"
_METADATA_KEY = "hero_bench_lora_config"


class LoraMismatchError(ConfigError):
    """A LoRA state dict or file does not fit the UNet it is loaded into."""


@dataclass(frozen=True)
class LoraConfig:
    """Which UNet layers get a LoRA adapter and how it starts."""

    rank: int = 4
    """Rank r of each adapter (the update is B·A with A: r×in, B: out×r)."""
    alpha: float = 4.0
    """LoRA alpha; the update is scaled by alpha / rank (4/4 = 1, as the released code)."""
    init: str = "gaussian"
    """peft init_lora_weights: "gaussian" (A ~ N(0, 1/r²), B = 0) or "default" (Kaiming A, B = 0)."""
    target_modules: tuple[str, ...] = ("to_q", "to_k", "to_v", "to_out.0")
    """Module names (suffixes) inside the UNet that get adapters: the attention projections."""

    def __post_init__(self) -> None:
        if self.rank < 1:
            raise ConfigError(f"lora.rank must be at least 1, got {self.rank}")
        if self.init not in ("gaussian", "default"):
            raise ConfigError(f"lora.init {self.init!r} is not supported; accepted: gaussian, default")
        if not self.target_modules:
            raise ConfigError("lora.target_modules must name at least one module")

    def to_peft(self):
        # deferred: peft (2.6 s; importing hero_bench.diffusion must not load it)
        import peft

        return peft.LoraConfig(
            r=self.rank,
            lora_alpha=self.alpha,
            init_lora_weights=True if self.init == "default" else "gaussian",
            target_modules=list(self.target_modules),
        )


def has_lora(unet) -> bool:
    return bool(getattr(unet, "_hf_peft_config_loaded", False)) and ADAPTER_NAME in getattr(unet, "peft_config", {})


def lora_parameters(unet) -> list[torch.nn.Parameter]:
    """The adapter's parameters, in a stable order."""
    return [p for name, p in unet.named_parameters() if ".lora_" in name]


def add_lora(unet, cfg: LoraConfig = LoraConfig(), seed: int = 0) -> list[torch.nn.Parameter]:
    """Freeze ``unet``, attach a LoRA adapter, return its (float32, trainable) parameters.

    peft initialises the adapter from torch's global generator; it runs inside a forked RNG seeded
    with ``seed``, so the init is reproducible and the caller's global RNG state is untouched.
    """
    if has_lora(unet):
        raise HeroBenchError("this UNet already has a LoRA adapter; load weights into it instead of adding another")
    unet.requires_grad_(False)
    devices = [unet.device] if unet.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        unet.add_adapter(cfg.to_peft(), adapter_name=ADAPTER_NAME)
    params = lora_parameters(unet)
    for p in params:
        p.data = p.data.float()
        p.requires_grad_(True)
    # remembered so save_lora can record how to rebuild the adapter
    unet._hero_bench_lora_config = cfg
    return params


def lora_state_dict(unet) -> dict[str, torch.Tensor]:
    """A detached copy of the adapter weights (keys without the adapter name)."""
    # deferred: peft (2.6 s; importing hero_bench.diffusion must not load it)
    from peft.utils import get_peft_model_state_dict

    if not has_lora(unet):
        raise HeroBenchError("this UNet has no LoRA adapter; call add_lora first")
    state = get_peft_model_state_dict(unet, adapter_name=ADAPTER_NAME)
    return {k: v.detach().clone() for k, v in state.items()}


def load_lora_state_dict(unet, state: dict[str, torch.Tensor]) -> None:
    """Copy adapter weights into ``unet``'s adapter; keys and shapes must match exactly."""
    current = lora_state_dict(unet)
    missing = sorted(set(current) - set(state))
    unexpected = sorted(set(state) - set(current))
    if missing or unexpected:
        raise LoraMismatchError(
            f"LoRA weights do not fit this UNet: {len(missing)} missing key(s) (e.g. {missing[:2]}), "
            f"{len(unexpected)} unexpected key(s) (e.g. {unexpected[:2]}); were they saved for another "
            "backbone or LoRA config?"
        )
    bad = [k for k in current if tuple(current[k].shape) != tuple(state[k].shape)]
    if bad:
        k = bad[0]
        raise LoraMismatchError(
            f"LoRA weight {k} has shape {tuple(state[k].shape)} but this UNet's adapter expects "
            f"{tuple(current[k].shape)} (different rank or backbone?)"
        )
    # peft's state-dict keys drop the adapter name; map them back to the live parameters
    params = dict(unet.named_parameters())
    with torch.no_grad():
        for key, value in state.items():
            module, leaf = key.rsplit(".", 1)
            name = f"{module}.{ADAPTER_NAME}.{leaf}"
            params[name].copy_(value.to(params[name].device, params[name].dtype))


def save_lora(unet, path: str | Path) -> None:
    """Write the adapter weights (only) to a safetensors file, atomically, with its LoraConfig."""
    state = {k: v.detach().cpu().contiguous() for k, v in lora_state_dict(unet).items()}
    cfg = getattr(unet, "_hero_bench_lora_config", None)
    metadata = {_METADATA_KEY: json.dumps(to_dict(cfg))} if cfg is not None else {}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata=metadata)


def read_lora_file(path: str | Path) -> tuple[dict[str, torch.Tensor], LoraConfig | None]:
    """The weights in a LoRA file and the LoraConfig recorded in it (None if absent)."""
    path = Path(path)
    if not path.is_file():
        raise HeroBenchError(f"LoRA file {str(path)!r} does not exist")
    try:
        state = load_file(str(path))
        with safe_open(str(path), framework="pt") as fh:
            metadata = fh.metadata() or {}
    except Exception as exc:  # noqa: BLE001 - safetensors raises several types for a bad file
        raise HeroBenchError(f"LoRA file {str(path)!r} is not a readable safetensors file ({exc})") from None
    cfg = from_dict(LoraConfig, json.loads(metadata[_METADATA_KEY])) if _METADATA_KEY in metadata else None
    return state, cfg


def load_lora(unet, path: str | Path) -> None:
    """Load adapter weights from ``path``; adds the adapter (with the file's config) if absent."""
    state, cfg = read_lora_file(path)
    if not has_lora(unet):
        add_lora(unet, cfg or LoraConfig())
    try:
        load_lora_state_dict(unet, state)
    except LoraMismatchError as exc:
        raise LoraMismatchError(f"{path}: {exc}") from None


@contextlib.contextmanager
def disable_lora(unet) -> Iterator[None]:
    """Run the base model: adapters are bypassed inside the block and restored after it."""
    if not has_lora(unet):
        yield
        return
    # deferred: peft (2.6 s; importing hero_bench.diffusion must not load it)
    from peft.tuners.tuners_utils import BaseTunerLayer

    layers = [m for m in unet.modules() if isinstance(m, BaseTunerLayer)]
    was_disabled = [m.disable_adapters for m in layers]
    unet.disable_adapters()
    try:
        yield
    finally:
        # restore each layer's own previous state, so nested uses compose
        for layer, disabled in zip(layers, was_disabled):
            layer.enable_adapters(not disabled)
