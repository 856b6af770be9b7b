"""The open_clip model of the CLIP and NSFW judges: its settings, where its weights are, and loading
it offline.

Weights never come from the network at run time. ``pretrained`` is a local checkpoint file, a
local folder (an ``open_clip_config.json`` folder, or any folder holding one checkpoint), or an
open_clip pretrained tag for ``model_name`` that is looked up in the local Hugging Face cache only
(``HF_HOME``/``HF_HUB_CACHE`` or ``hf_cache_dir``). Missing weights raise ``ModelNotFoundError``
naming the model, where it was looked for and how to provide it. ``clip_judge.py`` and ``nsfw.py``
judge with the ``ClipBundle`` that ``load_clip`` returns. This module registers no task.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np

from hero_bench.errors import ConfigError, ModelNotFoundError
from oracles.paper_prompts import resolve_device

CHECKPOINT_NAMES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
"""File names open_clip uses inside a model folder / Hugging Face repo, preferred first."""


@dataclass(frozen=True)
class ClipModelSettings:
    """Which open_clip model to load and where its weights are (shared by the CLIP and NSFW judges)."""

    model_name: str = "ViT-B-32"
    """open_clip architecture name (``open_clip.list_models()``), or one defined by a JSON file in
    ``model_config_dir``. Ignored when ``pretrained`` is a folder with an ``open_clip_config.json``."""
    pretrained: str = "laion2b_s34b_b79k"
    """Weights: a checkpoint file, a model folder, or an open_clip tag of ``model_name`` that must
    already be in the local Hugging Face cache (nothing is downloaded)."""
    model_config_dir: str = ""
    """Optional folder of extra open_clip model-config JSON files (custom or tiny architectures)."""
    hf_cache_dir: str = ""
    """Hugging Face hub cache to search for tagged weights; empty = the default (``HF_HUB_CACHE``)."""
    device: str = "auto"
    """``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:N``."""
    precision: Literal["fp32", "fp16", "bf16"] = "fp32"
    """Model precision on GPU; CPU always runs fp32."""
    batch_size: int = 32
    """Images encoded per forward pass."""

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if not self.model_name.strip():
            raise ValueError("model_name is empty; name an open_clip architecture, e.g. ViT-B-32")
        if self.model_name.startswith("hf-hub:"):
            raise ValueError(
                f"model_name {self.model_name!r}: hub schemas download at run time; download the "
                "repository once and set pretrained to its local folder instead"
            )


# -- loading ------------------------------------------------------------------------------------
@dataclass
class ClipBundle:
    """A loaded open_clip model with its eval preprocessing and tokenizer."""

    model: Any
    preprocess: Any
    tokenizer: Any
    device: str
    source: str
    """What was loaded, for oracle versions and error messages (``model_name@weights``)."""

    def encode_text(self, captions: Sequence[str]):
        """L2-normalised text embeddings ``[len(captions), D]`` (float32, on the model's device)."""
        # deferred: torch (the oracle modules import without it)
        import torch

        with torch.no_grad():
            tokens = self.tokenizer(list(captions)).to(self.device)
            feats = self.model.encode_text(tokens).float()
        return feats / feats.norm(dim=-1, keepdim=True).clamp_min(1e-12)

    def encode_images(self, images: np.ndarray, batch_size: int):
        """L2-normalised image embeddings ``[N, D]`` of uint8 ``[N, H, W, 3]`` images."""
        # deferred: torch, PIL (the oracle modules import without it)
        import torch
        from PIL import Image

        dtype = next(self.model.parameters()).dtype
        out = []
        with torch.no_grad():
            for start in range(0, len(images), batch_size):
                chunk = images[start : start + batch_size]
                pixels = torch.stack([self.preprocess(Image.fromarray(np.ascontiguousarray(im))) for im in chunk])
                feats = self.model.encode_image(pixels.to(self.device, dtype)).float()
                out.append(feats / feats.norm(dim=-1, keepdim=True).clamp_min(1e-12))
        return torch.cat(out) if out else torch.zeros((0, 0))

    def logit_scale(self) -> float:
        """The model's learned temperature (exp of ``logit_scale``, capped at 100 as in training)."""
        # deferred: torch (the oracle modules import without it)
        import torch

        with torch.no_grad():
            return float(min(float(self.model.logit_scale.exp()), 100.0))


def _not_found(settings: ClipModelSettings, looked: str, repo: str = "<repo>") -> Exception:
    return ModelNotFoundError(
        f"open_clip weights for model {settings.model_name!r} (pretrained={settings.pretrained!r}) not found: "
        f"{looked}. Nothing is downloaded at run time. Provide them by setting 'pretrained' (in the "
        "clip_judge or nsfw_judge section of $HERO_BENCH_ORACLE_SETTINGS, or the factory's settings) to a "
        "local checkpoint file or model folder, or by putting the tagged weights in the "
        f"Hugging Face cache beforehand (on a machine with network: `huggingface-cli download {repo}`, "
        "then copy the cache or point HF_HOME/HF_HUB_CACHE or "
        "'hf_cache_dir' at it)."
    )


def _checkpoint_in_dir(folder: Path) -> Path | None:
    for name in CHECKPOINT_NAMES:
        if (folder / name).is_file():
            return folder / name
    found = sorted(p for ext in ("*.safetensors", "*.pt", "*.pth", "*.bin") for p in folder.glob(ext))
    return found[0] if len(found) == 1 else None


def resolve_clip_weights(settings: ClipModelSettings) -> tuple[str, str | None, dict]:
    """Where the weights are, without touching the network.

    Returns ``(model_name, checkpoint_path, tag_config)``: ``model_name`` becomes
    ``local-dir:<folder>`` for an open_clip config folder (checkpoint_path is then None), and
    ``tag_config`` is open_clip's pretrained config for a tag (preprocessing, quick_gelu) or ``{}``.
    """
    # deferred: open_clip (imports torch), huggingface_hub below (the oracle modules import without it)
    import open_clip

    pretrained = settings.pretrained.strip()
    if not pretrained:
        raise _not_found(settings, "'pretrained' is empty")
    path = Path(pretrained).expanduser()
    if path.is_file():
        return settings.model_name, str(path), {}
    if path.is_dir():
        if (path / "open_clip_config.json").is_file():
            return f"local-dir:{path}", None, {}
        ckpt = _checkpoint_in_dir(path)
        if ckpt is None:
            raise _not_found(
                settings, f"folder {path} holds neither open_clip_config.json nor exactly one checkpoint "
                f"({', '.join(CHECKPOINT_NAMES)}, *.safetensors, *.pt, *.bin)"
            )
        return settings.model_name, str(ckpt), {}
    if os.sep in pretrained or pretrained.startswith((".", "~")) or pretrained.endswith(
        (".safetensors", ".pt", ".pth", ".bin")
    ):
        raise _not_found(settings, f"no file or folder at {path}")
    tag_cfg = open_clip.get_pretrained_cfg(settings.model_name, pretrained)
    if not tag_cfg:
        tags = open_clip.list_pretrained_tags_by_model(settings.model_name)
        raise _not_found(
            settings,
            f"{pretrained!r} is neither an existing path nor a known open_clip tag of {settings.model_name!r} "
            f"(known tags: {', '.join(tags) if tags else 'none'})",
        )
    looked = []
    repo_id = "<repo>"
    hub = tag_cfg.get("hf_hub", "")
    if hub:
        # deferred: huggingface_hub (0.15 s), needed only to name where a hub tag would be cached
        from huggingface_hub import constants, try_to_load_from_cache

        # open_clip's convention: "org/repo/filename", or "org/repo/" for the default file names
        repo_id, filename = os.path.split(hub)
        names = [filename] if filename else []
        if filename.endswith((".bin", ".pth", ".pt")):
            names.insert(0, os.path.splitext(filename)[0] + ".safetensors")
        names += [n for n in CHECKPOINT_NAMES if n not in names]
        cache_dir = settings.hf_cache_dir or constants.HF_HUB_CACHE
        for name in names:
            hit = try_to_load_from_cache(repo_id, name, cache_dir=cache_dir)
            if isinstance(hit, str) and os.path.isfile(hit):
                return settings.model_name, hit, dict(tag_cfg)
        looked.append(f"Hugging Face cache {cache_dir} has no {repo_id}/{{{', '.join(names)}}}")
    url = tag_cfg.get("url", "")
    if url:
        local = Path("~/.cache/clip").expanduser() / os.path.basename(url)
        if local.is_file():
            return settings.model_name, str(local), dict(tag_cfg)
        looked.append(f"no {local}")
    raise _not_found(settings, "; ".join(looked) or "the tag names no source", repo=repo_id)


def load_clip(settings: ClipModelSettings) -> ClipBundle:
    """Load an open_clip model, its eval preprocessing and tokenizer once, offline."""
    # deferred: open_clip (imports torch; the oracle modules import without it)
    import open_clip

    if settings.model_config_dir:
        folder = Path(settings.model_config_dir).expanduser()
        if not folder.is_dir():
            raise ConfigError(f"model_config_dir {folder} is not a folder")
        if settings.model_name not in open_clip.list_models():
            open_clip.add_model_config(folder)
    if settings.model_name not in open_clip.list_models() and not Path(settings.pretrained).expanduser().is_dir():
        raise ConfigError(
            f"unknown open_clip model_name {settings.model_name!r}; use one of open_clip.list_models() "
            f"(e.g. ViT-B-32, ViT-L-14) or define it with a JSON file in model_config_dir"
        )
    model_name, checkpoint, tag_cfg = resolve_clip_weights(settings)
    device = resolve_device(settings.device)
    precision = settings.precision if device.startswith("cuda") else "fp32"
    kwargs: dict[str, Any] = {}
    if tag_cfg:
        kwargs.update(
            image_mean=tag_cfg.get("mean"),
            image_std=tag_cfg.get("std"),
            image_interpolation=tag_cfg.get("interpolation"),
            image_resize_mode=tag_cfg.get("resize_mode"),
            force_quick_gelu=bool(tag_cfg.get("quick_gelu", False)),
        )
        kwargs = {k: v for k, v in kwargs.items() if v is not None}
    try:
        model, _, preprocess = open_clip.create_model_and_transforms(
            model_name, pretrained=checkpoint, precision=precision, device=device, **kwargs
        )
    except Exception as exc:  # noqa: BLE001 - a bad checkpoint or architecture mismatch
        raise ModelNotFoundError(
            f"could not load open_clip model {model_name!r} from {checkpoint or settings.pretrained!r}: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    model.eval().requires_grad_(False)
    tokenizer = open_clip.get_tokenizer(model_name)
    if model_name.startswith("local-dir:"):
        source = Path(model_name[len("local-dir:"):]).name
    else:
        source = f"{settings.model_name}@{Path(settings.pretrained).name or settings.pretrained}"
    return ClipBundle(model=model, preprocess=preprocess, tokenizer=tokenizer, device=device, source=source)
