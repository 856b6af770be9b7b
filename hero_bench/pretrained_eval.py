"""The pretrained model's evaluation, computed once and shared by the runs that would each repeat it.

Every run evaluates its model before training (epoch 0).  The evaluation noise is seeded by
``eval.seed`` alone (``hero_bench.evaluate``), and at epoch 0 every LoRA B matrix is zero, so each
adapted layer adds exactly 0.0 to its base layer's output: the model is the pretrained one, bit for
bit, whatever the method and the training seed.  Every run of a task therefore computes the same
epoch-0 numbers; the default workflow computed one 64-image evaluation twelve times per task
(four methods, three seeds), about a tenth of its 2-core wall time.

``PretrainedEvalCache`` stores that result in a folder, one JSON file per key, and hands it to the
runs that ask again.  The key is a sha256 over everything the numbers depend on:
- the backbone's weights as loaded (every tensor of the UNet but the LoRA layers, the text encoder
  and the VAE), its dtype and device, and its scheduler's configuration;
- the task (tier, name, prompts and their metadata) and the oracle (name, version);
- the evaluation and sampler settings (``EvalConfig`` but its schedule, ``SamplerConfig``);
- the software: the versions and platform of ``provenance.environment`` and a sha256 of the source
  of every module of ``hero_bench`` and of the oracle's module, so edited code never reads an old entry.
The cache is used only when the adapters are exactly zero (checked, not assumed); otherwise the
run evaluates as before.  An entry is written atomically and records the key's fields; an entry
that cannot be read, or whose fields differ from the key's (a collision, a hand edit), is computed
again and replaced.  Two processes that miss at the same moment both compute and both write the
same bytes.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import sys
from pathlib import Path
from typing import Any, Callable

import torch

from hero_bench.config import to_dict
from hero_bench.io import atomic_write_json
from hero_bench.provenance import environment

ENTRY_FORMAT = 1
_PACKAGE = Path(__file__).resolve().parent


def tensors_sha256(named: dict[str, torch.Tensor]) -> str:
    """sha256 of named tensors (names, dtypes, shapes and bytes, in name order)."""
    digest = hashlib.sha256()
    for name in sorted(named):
        t = named[name].detach().to("cpu").contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def backbone_weights_sha256(backbone) -> str:
    """sha256 of the pretrained weights the sampler runs: UNet (LoRA layers left out), text encoder, VAE."""
    named: dict[str, torch.Tensor] = {}
    for part in ("unet", "text_encoder", "vae"):
        module = getattr(backbone, part, None)
        if module is None:
            continue
        for name, tensor in module.state_dict().items():
            # peft keeps the pretrained weight as ...base_layer.weight: those are included
            if "lora_" not in name:
                named[f"{part}.{name}"] = tensor
    return tensors_sha256(named)


def scheduler_settings(scheduler) -> dict[str, Any]:
    """The scheduler's configuration as JSON values (lists, not tuples), so that it compares equal
    to the copy read back from an entry.  It lives in the model folder beside the weights, and a
    setting such as ``clip_sample`` changes every image (hero_bench/toyworld/model_card_notes.md,
    "Why deterministic sampling failed")."""
    return json.loads(json.dumps(dict(scheduler.config), sort_keys=True, default=str))


def adapters_are_zero(unet) -> bool:
    """True when every LoRA B matrix is exactly zero: each adapted layer then adds exactly 0.0."""
    b_matrices = [p for name, p in unet.named_parameters() if "lora_B" in name]
    return all(not torch.any(p.detach() != 0).item() for p in b_matrices)


def source_sha256(extra_modules: tuple[str, ...] = ()) -> str:
    """sha256 of the source of every hero_bench module and of the named extra modules."""
    files = sorted(_PACKAGE.rglob("*.py"))
    for name in extra_modules:
        module = sys.modules.get(name)
        path = inspect.getsourcefile(module) if module is not None else None
        if path:
            files.append(Path(path).resolve())
    digest = hashlib.sha256()
    for path in dict.fromkeys(files):
        digest.update(str(path.relative_to(_PACKAGE.parent) if path.is_relative_to(_PACKAGE.parent) else path.name).encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def key_fields(backbone, task, oracle, sampler_cfg, eval_cfg, tier: str) -> dict[str, Any]:
    """Everything the pretrained model's evaluation depends on, as JSON-able values."""
    evaluation = to_dict(eval_cfg)
    for schedule in ("every_epochs", "at_start"):  # when a run evaluates, not what one evaluation is
        evaluation.pop(schedule, None)
    return {
        "format": ENTRY_FORMAT,
        "backbone_sha256": backbone_weights_sha256(backbone),
        "dtype": str(backbone.dtype),
        "device": str(backbone.device),
        "tier": tier,
        "task": task.name,
        "train_prompts": [[p.text, repr(p.metadata)] for p in task.train_prompts],
        "eval_prompts": [[p.text, repr(p.metadata)] for p in task.eval_prompts],
        "oracle": str(getattr(oracle, "name", type(oracle).__name__)),
        "oracle_version": str(getattr(oracle, "version", "")),
        "evaluation": evaluation,
        "sampler": to_dict(sampler_cfg),
        "scheduler": scheduler_settings(backbone.scheduler),
        "environment": environment(),
        "source_sha256": source_sha256((type(oracle).__module__,)),
    }


def key_of(fields: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


class PretrainedEvalCache:
    """A folder of pretrained-model evaluations (``<key>.json``), shared by the runs of a workflow."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)

    def get_or_compute(self, fields: dict[str, Any],
                       compute: Callable[[], dict[str, Any]]) -> tuple[dict[str, Any], bool]:
        """The evaluation stored under ``fields``' key, or ``compute()``'s, stored; and whether it was stored."""
        path = self.folder / f"{key_of(fields)}.json"
        try:
            entry = json.loads(path.read_text())
            if entry.get("fields") == fields:
                return entry["result"], True
        except (OSError, ValueError, AttributeError, KeyError):
            pass  # absent or unreadable: computed again and replaced
        result = compute()
        self.folder.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, {"fields": fields, "result": result})
        return result, False
