"""Where one training epoch's time goes (docs/performance.md).

``profile_epoch`` builds a run exactly as ``hero-bench train`` does (``Run.setup``), evaluates the
pretrained model once (as a run starts; this also warms up every code path), then times one
training epoch (``Run.run_epoch``: sample, label, update, evaluation, checkpoint).  No line of the
training loop changes: for the duration of the epoch, wall-clock timers wrap the real objects of
that one run:

- components: the UNet's ``forward`` (instance attribute), ``torch.Tensor.backward`` (in the
  update pass the graph is the UNet plus a few element-wise DDIM/loss operations, so its time is
  counted as UNet backward), the backbone's ``encode_prompts`` (tokenizer and text encoder), the
  oracle's ``__call__``, HERO's ``train_representation`` and ``rewards`` (the embedding network:
  forward, backward and Adam), the LoRA optimizer step (``kernels._optimizer_step``: grad-norm
  clip, AdamW, zero_grad), and checkpointing (``Run.save_checkpoint``, ``Run.write_tables``,
  ``diffusion.lora.save_lora``);
- phases: ``sample``, ``label``, ``update`` (the method's three calls), ``evaluate``
  (``Run.evaluate``), ``checkpoint`` and ``runner`` (the loop's glue between them).

Time is charged to the innermost open component (a backward inside the embedding network stays
the embedding network's); what no wrapper claims is ``other`` (DDIM step arithmetic, log-probs,
losses, indexing, Python glue).  Beside the epoch the same process times a bare UNet forward and
backward (LoRA attached, loss = mean of the output) on the exact inputs of the update pass's
first UNet call: the reference a training step cannot beat.

Command line (what the benchmark ``tests/benchmarks/test_bench_epoch.py`` runs per method)::

    python -m hero_bench.profiling --method hero --images 32 --out results/bench/epoch_hero.json
    python -m hero_bench.profiling --method ddpo --images 32 --steps 40   # another sampler length
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from hero_bench.io import atomic_write_text
from hero_bench.methods import get_method, trained_method_names

COMPONENTS = ("unet_forward", "unet_backward", "text_encoder", "oracle", "embedding_net", "optimizer",
              "checkpoint", "other")
"""What an epoch's time is split into (``other`` = everything no wrapper claims)."""
PHASES = ("sample", "label", "update", "evaluate", "checkpoint", "runner")
"""The epoch's phases, in the order the runner calls them; ``runner`` = the loop's own bookkeeping
between them (counters, the train-log row)."""
UNET = ("unet_forward", "unet_backward")


class Clock:
    """Exclusive time per (phase, component): every interval goes to the innermost open frame.

    Both wall time (``seconds``) and the process's CPU time (``cpu_seconds``) are kept: on a
    machine shared with other jobs the wall time of a step swings with their load while its CPU
    time stays put (with one torch thread the two agree on an idle machine)."""

    def __init__(self) -> None:
        self.seconds: dict[tuple[str, str], float] = defaultdict(float)
        self.cpu_seconds: dict[tuple[str, str], float] = defaultdict(float)
        self.calls: Counter = Counter()
        self.stack: list[tuple[str, str]] = [("runner", "other")]
        self.restart()

    def restart(self) -> None:
        """Forget everything measured so far and start the clocks now."""
        self.seconds.clear()
        self.cpu_seconds.clear()
        self.calls.clear()
        self.stack = [("runner", "other")]
        self.mark, self.cpu_mark = time.perf_counter(), time.process_time()

    def _charge(self) -> None:
        now, cpu = time.perf_counter(), time.process_time()
        self.seconds[self.stack[-1]] += now - self.mark
        self.cpu_seconds[self.stack[-1]] += cpu - self.cpu_mark
        self.mark, self.cpu_mark = now, cpu

    @contextlib.contextmanager
    def frame(self, phase: str | None = None, component: str | None = None,
              unless_inside: Sequence[str] = ()) -> Iterator[None]:
        """Open a frame; ``None`` inherits the enclosing phase / component.  A component listed in
        ``unless_inside`` that is already open keeps the time (and this frame is not counted)."""
        top_phase, top_component = self.stack[-1]
        if top_component in unless_inside:
            component = top_component
        frame = (phase or top_phase, component or ("other" if phase else top_component))
        self._charge()
        self.stack.append(frame)
        self.calls[frame] += 1
        try:
            yield
        finally:
            self._charge()
            self.stack.pop()

    def wrap(self, fn: Callable, phase: str | None = None, component: str | None = None,
             unless_inside: Sequence[str] = ()) -> Callable:
        def timed(*args, **kwargs):
            with self.frame(phase, component, unless_inside):
                return fn(*args, **kwargs)

        timed.__wrapped__ = fn  # type: ignore[attr-defined]
        return timed


class _TimedOracle:
    """The run's oracle with a timed ``__call__`` (name, version and the rest pass through)."""

    def __init__(self, oracle, clock: Clock):
        self._oracle = oracle
        self._call = clock.wrap(oracle.__call__, component="oracle")

    def __call__(self, *args, **kwargs):
        return self._call(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._oracle, name)


@contextlib.contextmanager
def _patched(obj, name: str, value) -> Iterator[None]:
    """Set ``obj.name = value`` for the block; restore the previous state after (instance
    attributes are deleted again, so the class's method shows through)."""
    had = name in vars(obj)
    old = getattr(obj, name)
    setattr(obj, name, value)
    try:
        yield
    finally:
        if had:
            setattr(obj, name, old)
        else:
            delattr(obj, name)


@contextlib.contextmanager
def instrument(run, clock: Clock, unet_calls: list) -> Iterator[None]:
    """Wrap the real objects of a set-up ``hero_bench.runner.Run`` with ``clock``'s timers.

    ``unet_calls`` receives ``(phase, grad_enabled, inputs, {"wall": s, "cpu": s})`` of every UNet forward
    (``inputs`` = ``(args, kwargs)`` of the first gradient-enabled call, for the bare reference;
    None for the others)."""
    # deferred: torch and the run code (`python -m hero_bench.profiling --help` and `table` run without them)
    import torch

    from hero_bench.algorithms import kernels
    from hero_bench.diffusion import lora

    unet = run.backbone.unet
    unet_forward = clock.wrap(unet.forward, component="unet_forward")

    def recorded_forward(*args, **kwargs):
        grad = torch.is_grad_enabled()
        keep = grad and not any(c[1] for c in unet_calls)
        phase = clock.stack[-1][0]
        t0, c0 = time.perf_counter(), time.process_time()
        out = unet_forward(*args, **kwargs)
        unet_calls.append((phase, grad, (args, kwargs) if keep else None,
                           {"wall": time.perf_counter() - t0, "cpu": time.process_time() - c0}))
        return out

    method = run.method
    timed_oracle = _TimedOracle(run.oracle, clock)
    with contextlib.ExitStack() as stack:
        enter = stack.enter_context
        enter(_patched(unet, "forward", recorded_forward))
        enter(_patched(torch.Tensor, "backward",
                       clock.wrap(torch.Tensor.backward, component="unet_backward", unless_inside=("embedding_net",))))
        enter(_patched(run.backbone, "encode_prompts",
                       clock.wrap(run.backbone.encode_prompts, component="text_encoder")))
        enter(_patched(run, "oracle", timed_oracle))
        enter(_patched(run.evaluator, "oracle", timed_oracle))
        enter(_patched(kernels, "_optimizer_step", clock.wrap(kernels._optimizer_step, component="optimizer")))
        enter(_patched(lora, "save_lora", clock.wrap(lora.save_lora, component="checkpoint")))
        for name in ("train_representation", "rewards"):  # HERO's embedding network
            if hasattr(method, name):
                enter(_patched(method, name, clock.wrap(getattr(method, name), component="embedding_net")))
        for name in ("sample", "label", "update"):
            enter(_patched(method, name, clock.wrap(getattr(method, name), phase=name)))
        enter(_patched(run, "evaluate", clock.wrap(run.evaluate, phase="evaluate")))
        for name in ("save_checkpoint", "write_tables"):
            enter(_patched(run, name, clock.wrap(getattr(run, name), phase="checkpoint", component="checkpoint")))
        yield


def bare_unet_step(unet, args, kwargs, repeats: int) -> dict[str, list[float]]:
    """Wall and CPU seconds of ``repeats`` bare UNet forward + backward passes (loss = mean of the
    output) on the given inputs; the LoRA gradients are cleared afterwards."""
    params = [p for p in unet.parameters() if p.requires_grad]
    times: dict[str, list[float]] = {"wall": [], "cpu": []}
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        out = unet(*args, **kwargs)
        out = out[0] if isinstance(out, tuple) else out.sample
        out.float().mean().backward()
        times["wall"].append(time.perf_counter() - t0)
        times["cpu"].append(time.process_time() - c0)
    for p in params:
        p.grad = None
    return times


def profile_config(method: str, images: int, *, task: str = "sanity", tier: str = "toy", seed: int = 0,
                   backbone: str | None = None, overrides: Sequence[str] = (), steps: int | None = None):
    """The RunConfig ``profile_epoch`` runs: the tier's preset with ``images`` per epoch (D3PO:
    ``round(images / group_size)`` groups), an evaluation of as many images after every epoch, and
    a budget that never ends the run (so the epoch is evaluated because it is scheduled).
    ``steps`` (default: the preset's) sets the DDIM sampler's number of denoising steps."""
    # deferred: presets imports torch (`--help` and `table` run without it)
    from hero_bench.presets import build_run_config

    cfg = build_run_config(tier, task, method, seed=seed, budget=10**6, backbone=backbone)
    section = get_method(method).section  # the epoch size is a setting of the method's section
    if section == "d3po":
        groups = max(1, round(images / cfg.d3po.group_size))
        size, images = [f"d3po.groups_per_epoch={groups}"], groups * cfg.d3po.group_size
    else:
        size = [f"{section}.images_per_epoch={images}"]
    if steps is not None:
        size.append(f"sampler.steps={steps}")
    return build_run_config(tier, task, method, seed=seed, budget=10**6, backbone=backbone, overrides=[
        *size, f"eval.n_images={images}", "eval.every_epochs=1", *overrides])


def _unet_reference(unet, clock: Clock, unet_calls: list, repeats: int) -> dict[str, Any] | None:
    """The bare UNet forward + backward on the inputs of the update's first gradient-enabled UNet
    call, beside what the update's calls cost in the loop; None when no call had gradients."""
    first_grad = next((c[2] for c in unet_calls if c[1]), None)
    if first_grad is None:
        return None
    args, kwargs = first_grad
    bare = bare_unet_step(unet, args, kwargs, repeats + 1)
    train = [c for c in unet_calls if c[0] == "update" and c[1]]
    reference = {"batch_rows": int(args[0].shape[0]) if args else None, "training_calls": len(train),
                 "bare_repeats": repeats}
    for kind, seconds in (("wall", clock.seconds), ("cpu", clock.cpu_seconds)):
        bare_s = statistics.median(bare[kind][1:])  # the first pass is a warm-up
        # the update's gradient-enabled forwards (D3PO's pretrained reference runs without) + its backwards
        in_loop = sum(c[3][kind] for c in train) + seconds[("update", "unet_backward")]
        reference[kind] = {"bare_forward_backward_s": bare_s,
                           "in_loop_forward_backward_s_per_call": in_loop / len(train),
                           "bare_s_times_training_calls": bare_s * len(train)}
    return reference


def _split(seconds: dict[tuple[str, str], float]) -> dict[str, Any]:
    """An epoch's (phase, component) seconds as totals and shares per component and per phase."""
    total = sum(seconds.values())
    by_component = {c: sum(s for (_, k), s in seconds.items() if k == c) for c in COMPONENTS}
    by_phase = {p: sum(s for (q, _), s in seconds.items() if q == p) for p in PHASES}
    return {
        "epoch_s": total,
        "unet_share": sum(by_component[c] for c in UNET) / total,
        "components_s": by_component,
        "components_share": {c: s / total for c, s in by_component.items()},
        "phases_s": by_phase,
        "phases_share": {p: s / total for p, s in by_phase.items()},
        "phase_component_s": {f"{p}/{c}": s for (p, c), s in sorted(seconds.items()) if s > 0},
    }


def _measure(cfg, run_dir: str | Path | None, reference_repeats: int) -> dict[str, Any]:
    """Set up the run of ``cfg`` (in a temporary folder unless ``run_dir``), evaluate once as a run
    starts (the warm-up), time one instrumented epoch, then the bare-UNet reference."""
    # deferred: runner imports torch (`--help` and `table` run without it)
    from hero_bench.runner import Run, RunState

    with contextlib.ExitStack() as stack:
        if run_dir is None:
            run_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="epoch-profile-"))
        run = Run(cfg, run_dir, progress=False)
        run.check_config()
        t0 = time.perf_counter()
        run.setup()
        setup_s = time.perf_counter() - t0
        state = RunState()
        t0 = time.perf_counter()
        run.evaluate(state)  # what a run does first; also the warm-up of sampling and the oracle
        run.save_checkpoint(state)
        warmup_s = time.perf_counter() - t0

        clock, unet_calls = Clock(), []
        with instrument(run, clock, unet_calls):
            clock.restart()
            run.run_epoch(state, run.method.batch_size(cfg.budget))
            clock._charge()
        reference = _unet_reference(run.backbone.unet, clock, unet_calls, reference_repeats)
    return {
        "setup_s": setup_s, "warmup_eval_s": warmup_s,
        "cpu": _split(clock.cpu_seconds),
        "wall": _split(clock.seconds),
        "unet_forward_calls": Counter(f"{c[0]}/{'grad' if c[1] else 'no_grad'}" for c in unet_calls),
        "reference": reference,
    }


def profile_epoch(method: str, images: int, *, task: str = "sanity", tier: str = "toy", seed: int = 0,
                  backbone: str | None = None, overrides: Sequence[str] = (), steps: int | None = None,
                  threads: int = 1, reference_repeats: int = 10,
                  run_dir: str | Path | None = None) -> dict[str, Any]:
    """Profile one training epoch of ``method`` with ``images`` images per epoch (D3PO: groups of
    the preset's size, ``round(images / group_size)`` of them) and an evaluation of as many images
    (``eval.n_images = images``, every epoch: the preset's ratio of evaluated to trained images);
    ``steps`` overrides the sampler's denoising steps (training and evaluation alike).

    Returns a JSON-able dict: the settings, ``epoch_s``, seconds and shares per component, per
    phase and per (phase, component), the UNet calls and the bare-UNet reference."""
    # deferred: torch (`--help` and `table` run without it)
    import torch

    cfg = profile_config(method, images, task=task, tier=tier, seed=seed, backbone=backbone, overrides=overrides,
                         steps=steps)
    images = cfg.eval.n_images  # = the epoch's images (D3PO: whole groups)

    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        measured = _measure(cfg, run_dir, reference_repeats)
    finally:
        torch.set_num_threads(previous_threads)
    return {
        "method": method, "task": task, "tier": tier, "seed": seed, "images": images,
        "eval_images": cfg.eval.n_images, "sampler_steps": cfg.sampler.steps, "threads": threads,
        "torch": torch.__version__, "overrides": list(overrides),
        **measured,
    }


def table(profiles: Sequence[dict[str, Any]], kind: str = "cpu") -> str:
    """A Markdown table, one column per profile: seconds per epoch (CPU and wall), then the shares
    of ``kind`` time (``cpu`` or ``wall``) per component and per phase, then the bare-UNet reference."""
    def row(label: str, cell: Callable[[dict], str]) -> str:
        return f"| {label} | " + " | ".join(cell(p) for p in profiles) + " |"

    def ref(key: str, fmt: Callable[[float], str]) -> Callable[[dict], str]:
        def cell(p: dict) -> str:
            r = (p.get("reference") or {}).get(kind) or {}
            return fmt(r[key]) if r.get(key) is not None else "–"
        return cell

    lines = [row("", lambda p: f"{p['method']} ({p['images']} img)"), "|---|" + "---:|" * len(profiles),
             row("epoch, CPU s", lambda p: f"{p['cpu']['epoch_s']:.1f}"),
             row("epoch, wall s", lambda p: f"{p['wall']['epoch_s']:.1f}"),
             row(f"**UNet forward + backward** ({kind})", lambda p: f"**{100 * p[kind]['unet_share']:.1f}%**")]
    lines += [row(c, lambda p, c=c: f"{100 * p[kind]['components_share'][c]:.1f}%") for c in COMPONENTS]
    lines += [row(f"phase: {ph}", lambda p, ph=ph: f"{100 * p[kind]['phases_share'][ph]:.1f}%") for ph in PHASES]
    lines += [row("UNet rows per training call", lambda p: str((p.get("reference") or {}).get("batch_rows", "–"))),
              row(f"bare UNet fwd+bwd, ms ({kind})", ref("bare_forward_backward_s", lambda v: f"{1000 * v:.1f}")),
              row(f"in-loop UNet fwd+bwd per call, ms ({kind})",
                  ref("in_loop_forward_backward_s_per_call", lambda v: f"{1000 * v:.1f}"))]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hero_bench.profiling", description=__doc__.split("\n\n")[0])
    parser.add_argument("--method", action="append", choices=trained_method_names(),
                        help="method(s) to profile (repeatable; default: every method that trains)")
    parser.add_argument("--images", type=int, default=32, help="images per epoch (D3PO: whole groups; default 32)")
    parser.add_argument("--task", default="sanity")
    parser.add_argument("--tier", default="toy", choices=("smoke", "toy"))
    parser.add_argument("--backbone", default=None)
    parser.add_argument("--steps", type=int, default=None,
                        help="DDIM denoising steps, training and evaluation (default: the preset's; toy 20)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1, as the toy workflow runs)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--out", default=None, help="JSON file to write (a Markdown table is written beside it)")
    args = parser.parse_args(argv)
    profiles = [profile_epoch(m, args.images, task=args.task, tier=args.tier, backbone=args.backbone,
                              overrides=args.overrides, steps=args.steps, threads=args.threads)
                for m in (args.method or trained_method_names())]
    text = table(profiles)
    print(text)
    if args.out:
        write_profiles(args.out, profiles)
    return 0


def write_profiles(path: str | Path, profiles: Sequence[dict[str, Any]]) -> None:
    """``path`` (JSON, a list of profiles) and the Markdown table beside it (``.md``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(list(profiles), indent=1) + "\n")
    atomic_write_text(path.with_suffix(".md"), table(profiles))


if __name__ == "__main__":
    sys.exit(main())
