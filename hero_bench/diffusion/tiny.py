"""A tiny random Stable-Diffusion-architecture backbone, built from configs, for tests and the smoke tier.

Same classes as SD 1.5 (UNet2DConditionModel with cross-attention, AutoencoderKL, CLIPTextModel, a
CLIP BPE tokenizer, DDIMScheduler with SD 1.5's beta schedule), scaled down to 16×16×4 latents and
32 px images, saved in diffusers format so it loads through the same ``load_backbone`` as SD 1.5.
Everything is built offline: the tokenizer's vocabulary is the byte alphabet plus a small
built-in word list.  Weights are deterministic from ``seed``.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import torch
from tokenizers import pre_tokenizers

from hero_bench.diffusion.backbone import quiet_hf_progress
from hero_bench.errors import HeroBenchError

BUILD_INFO = "hero_bench_tiny.json"
TINY_VERSION = "1"
VOCAB_SIZE = 1000
MAX_LENGTH = 77
HIDDEN = 32
# SD 1.5's noise schedule (its scheduler/scheduler_config.json, minus the PNDM-only keys)
SD15_SCHEDULER = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "clip_sample": False,
    "set_alpha_to_one": False,
    "steps_offset": 1,
    "prediction_type": "epsilon",
}
# files whose presence marks a complete build (written last-to-first would not matter: the folder
# appears by an atomic rename, but a hand-copied folder may be partial)
REQUIRED_FILES = (
    "model_index.json",
    "unet/config.json",
    "unet/diffusion_pytorch_model.safetensors",
    "vae/config.json",
    "vae/diffusion_pytorch_model.safetensors",
    "text_encoder/config.json",
    "text_encoder/model.safetensors",
    "tokenizer/tokenizer_config.json",
    "scheduler/scheduler_config.json",
    BUILD_INFO,
)
# words the tokenizer's BPE merges are learned from: the prompt vocabulary of the toy and paper tasks
_CORPUS_WORDS = (
    "a an the of in on with and or no not is are this that photo picture image drawing painting "
    "one two three four five six seven eight nine ten zero 1 2 3 4 5 6 7 8 9 0 "
    "red green blue yellow orange purple pink white black gray grey brown cyan magenta "
    "circle circles square squares triangle triangles star stars cross crosses ring rings "
    "shape shapes object objects left right above below top bottom middle center next to inside "
    "outside near far small large big tiny background foreground scene "
    "hand hands finger fingers palm thumb person people man woman holding waving "
    "cat dog rose roses flower flowers box mountain mountains lake water reflection narcissus "
    "sky sun tree trees field river snow night day beautiful realistic detailed high quality"
).split()


def build_tokenizer():
    """A CLIP BPE tokenizer: the byte-level alphabet plus merges that spell each corpus word.

    Every byte is in the vocabulary (alone and at a word end), so any text tokenises without unknown
    tokens.  The merges join each word of ``_CORPUS_WORDS`` left to right into one token; they are
    written out rather than learned because the ``tokenizers`` BPE trainer breaks frequency ties
    in hash order, which would make the build non-deterministic.
    """
    # deferred: transformers (0.5 s; only building the model needs it)
    from transformers import CLIPTokenizer

    bos, eos = "<|startoftext|>", "<|endoftext|>"
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {bos: 0, eos: 1}
    for symbol in alphabet + [a + "</w>" for a in alphabet]:
        vocab[symbol] = len(vocab)
    merges: list[tuple[str, str]] = []
    for word in dict.fromkeys(_CORPUS_WORDS):
        chain = []
        prefix = word[0]
        for i, char in enumerate(word[1:], start=1):
            right = char + ("</w>" if i == len(word) - 1 else "")
            chain.append((prefix, right))
            prefix += right
        new_tokens = [a + b for a, b in chain if a + b not in vocab]
        if len(vocab) + len(new_tokens) > VOCAB_SIZE:
            break
        for left, right in chain:
            if left + right not in vocab:
                vocab[left + right] = len(vocab)
                merges.append((left, right))
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=MAX_LENGTH)


TINY_UNET = dict(
    sample_size=16,
    in_channels=4,
    out_channels=4,
    block_out_channels=(32, 64),
    layers_per_block=1,
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
    cross_attention_dim=HIDDEN,
    attention_head_dim=8,
    norm_num_groups=32,
)
"""The tiny UNet's ``UNet2DConditionModel`` arguments."""
TINY_VAE = dict(
    block_out_channels=(32, 64),
    in_channels=3,
    out_channels=3,
    down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
    up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
    latent_channels=4,
    sample_size=32,
)
"""The tiny VAE's ``AutoencoderKL`` arguments."""
TINY_TEXT = dict(vocab_size=VOCAB_SIZE, hidden_size=HIDDEN, intermediate_size=64, num_hidden_layers=2,
                 num_attention_heads=4)
"""The tiny text encoder's ``CLIPTextConfig`` arguments (positions and special tokens come from the tokenizer)."""


def build_components(seed: int = 0, unet: dict | None = None, vae: dict | None = None,
                     text: dict | None = None) -> dict:
    """An SD-architecture model's components with random weights (deterministic from ``seed``), not
    yet saved: the tiny model by default; ``unet`` / ``vae`` / ``text`` give other architectures
    (``scripts/gpu_check.py`` builds SD 1.5's) with the same tokenizer and scheduler."""
    # deferred: diffusers, transformers (2 s; only building the model needs them)
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    tokenizer = build_tokenizer()
    # Module constructors draw from torch's global generator; a forked RNG seeded here keeps the
    # weights a function of ``seed`` alone and leaves the caller's RNG state untouched.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet_model = UNet2DConditionModel(**(TINY_UNET if unet is None else unet))
        vae_model = AutoencoderKL(**(TINY_VAE if vae is None else vae))
        text_encoder = CLIPTextModel(
            CLIPTextConfig(
                max_position_embeddings=MAX_LENGTH,
                bos_token_id=tokenizer.bos_token_id,
                eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id,
                **(TINY_TEXT if text is None else text),
            )
        )
    return {
        "unet": unet_model.eval(),
        "vae": vae_model.eval(),
        "text_encoder": text_encoder.eval(),
        "tokenizer": tokenizer,
        "scheduler": DDIMScheduler(**SD15_SCHEDULER),
    }


def is_complete(folder: str | os.PathLike) -> bool:
    folder = Path(folder)
    return all((folder / f).is_file() for f in REQUIRED_FILES)


def build_info(folder: str | os.PathLike) -> dict | None:
    """The seed and version a tiny backbone folder was built with (None if not a tiny build)."""
    path = Path(folder) / BUILD_INFO
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def build_tiny_backbone(out_dir: str | os.PathLike, seed: int = 0, overwrite: bool = False) -> Path:
    """Build the tiny backbone into ``out_dir`` (diffusers layout) and return the path.

    The model is written into a temporary sibling folder and renamed into place, so ``out_dir``
    is either absent or complete.  An existing ``out_dir`` is replaced only with ``overwrite``.
    """
    # deferred: diffusers (1.6 s; only building the model needs it)
    from diffusers import StableDiffusionPipeline

    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()) and not overwrite:
        raise HeroBenchError(f"{out_dir} already exists and is not empty; pass overwrite=True (--force) to replace it")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.build-", dir=out_dir.parent))
    try:
        pipeline = StableDiffusionPipeline(
            **build_components(seed),
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
        )
        with quiet_hf_progress():
            pipeline.save_pretrained(tmp, safe_serialization=True)
        (tmp / BUILD_INFO).write_text(json.dumps({"seed": seed, "version": TINY_VERSION}, indent=2) + "\n")
        if out_dir.exists():
            trash = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
            os.replace(out_dir, trash / "old")
            os.replace(tmp, out_dir)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(tmp, out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out_dir
