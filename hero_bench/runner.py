"""One training run: the epoch loop, checkpoint/resume and scheduled evaluation.

The run's config (``RunConfig``), the layout of RUN_DIR and its file names are in
``hero_bench.run_config``.

The loop (docs/architecture.md, "The flow of one run"):

    evaluate the pretrained model (epoch 0), checkpoint
    while the budget left admits a batch:
        sample → label (ledger first) → update          (the method's three phases)
        evaluate if scheduled (every k epochs, and always the last), save the adapter
        checkpoint: LoRA weights, optimizers, method state, counters, eval and log rows
        rewrite eval.csv and train_log.csv from the checkpointed rows
    DONE.json

Resume: when checkpoint.pt exists the run continues after its epoch.  Labels the crashed process
already obtained are in the ledger; the resumed process re-samples the same epoch (every random
draw is a function of (seed, epoch, purpose), and the weights are those of the checkpoint), so the
evaluator finds the same image ids and replays their labels without asking again.  The outputs
are rewritten from the checkpoint, so a crash between the checkpoint and the CSV writes loses
nothing.  A run killed at any moment and restarted with the same command therefore ends with the
same eval.csv and ledger.jsonl, bitwise on CPU, as an uninterrupted run.  A finished run
(DONE.json) restarted does nothing.

The loop only computes and writes.  What a run shows on the console, and the points where the
resume tests crash it, are callbacks (``hero_bench.run_hooks``) that ``train`` installs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch
import yaml

from hero_bench.algorithms import get_algorithm
from hero_bench.algorithms.base import RunContext
from hero_bench.config import to_dict
from hero_bench.diffusion.backbone import load_backbone, resolve_backbone
from hero_bench.diffusion.lora import add_lora, load_lora_state_dict, lora_state_dict, save_lora
from hero_bench.errors import ConfigError, HeroBenchError
from hero_bench.evaluate import eval_row, evaluate_model, rows_to_csv
from hero_bench.feedback import OracleCallPolicy, SimulatedEvaluator
from hero_bench.integrity import (adapter_name, check_resume, done_record, file_sha256, ledger_state,
                                  recorded_adapters)
from hero_bench.io import (FolderBusyError, atomic_torch_save, atomic_write_json, atomic_write_text,
                           exclusive_folder, remove_stale_temporaries)
from hero_bench.ledger import FeedbackLedger
from hero_bench.methods import settings_section
from hero_bench.pretrained_eval import PretrainedEvalCache, adapters_are_zero, key_fields
from hero_bench.provenance import environment, git_sha, run_config_hash
from hero_bench.results import EVAL_COLUMNS
from hero_bench.run_config import (
    CHECKPOINT_FILE,
    CONFIG_FILE,
    DONE_FILE,
    EVAL_FILE,
    LEDGER_FILE,
    TRAIN_LOG_FILE,
    RunConfig,
    config_yaml,
)
from hero_bench.run_hooks import ConsoleProgress, HookList, RunHooks, crash_from_env, trace_from_env
from hero_bench.seeding import derive_seed
from hero_bench.tasks import get_task_of_tier
from hero_bench.web_evaluator import WebEvaluator
from hero_bench.web_server import LabellingServer

CHECKPOINT_FORMAT = 1

# --------------------------------------------------------------------------------------------
# State
# --------------------------------------------------------------------------------------------


@dataclass
class RunState:
    """The run-level counters and rows (the method's own state is checkpointed next to it)."""

    epoch: int = 0
    feedback_used: int = 0
    queries: int = 0
    images_generated: int = 0
    eval_rows: list[dict] = field(default_factory=list)
    train_rows: list[dict] = field(default_factory=list)


TRAIN_LOG_FIRST = ("epoch", "n_images", "feedback_used", "queries", "images_generated")
TRAIN_LOG_TIMES = ("sample_s", "label_s", "update_s", "eval_s", "epoch_s")


def train_log_columns(rows: list[dict]) -> list[str]:
    metrics = sorted({k for r in rows for k in r} - set(TRAIN_LOG_FIRST) - set(TRAIN_LOG_TIMES))
    return [*TRAIN_LOG_FIRST, *metrics, *TRAIN_LOG_TIMES]


def epochs_to_budget(method, budget: int) -> list[int]:
    """The batch size of every epoch until the budget is spent (or no longer admits a batch)."""
    sizes, used = [], 0
    while method.trains:
        n = method.batch_size(budget - used)
        if n == 0:
            break
        sizes.append(n)
        used += n
    return sizes


# --------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------


class Run:
    """A run directory being trained (``train`` below is the entry point)."""

    def __init__(self, cfg: RunConfig, run_dir: str | Path, progress: bool = True, hooks: Sequence[RunHooks] = (),
                 oracle_policy: OracleCallPolicy | None = None, labeller: LabellingServer | None = None,
                 pretrained_eval_cache: PretrainedEvalCache | None = None):
        """``progress`` installs the console hook (a progress bar and a line per epoch on stderr);
        ``hooks`` are further callbacks of the loop (``hero_bench.run_hooks``); ``oracle_policy``
        is how the evaluator calls the oracle (time limit, retries: operational, so not in ``cfg``);
        ``labeller``, a started labelling server, puts a person in the oracle's place for the labels
        (``hero_bench.web_evaluator``; who labels is operational too: the ledger records it);
        ``pretrained_eval_cache`` shares the pretrained model's evaluation between runs
        (``hero_bench.pretrained_eval``; it changes no number, only how often one is computed)."""
        self.cfg = cfg
        self.pretrained_eval_cache = pretrained_eval_cache
        self.pretrained_eval_reused = False  # epoch 0 read from the cache (the console says so)
        self.oracle_policy = oracle_policy
        self.labeller = labeller
        self.dir = Path(run_dir)
        self.hooks = HookList(([ConsoleProgress()] if progress else []) + list(hooks))

    # -- setup --------------------------------------------------------------------------------
    def check_config(self) -> None:
        """Write config.yaml, or check that an existing one is this config (a resume)."""
        path = self.dir / CONFIG_FILE
        if path.exists():
            with open(path) as fh:
                existing = yaml.safe_load(fh)
            current = to_dict(self.cfg)
            if existing != current:
                diff = sorted(_diff_keys(existing or {}, current))
                raise ConfigError(
                    f"{self.dir} already holds a run with a different config (differs in: {', '.join(diff)}); "
                    "rerun with the original settings to resume it, or choose another --out"
                )
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, config_yaml(self.cfg))

    def setup(self) -> None:
        cfg = self.cfg
        self.task = get_task_of_tier(cfg.task, cfg.tier)  # a config.yaml read back is checked too
        self.backbone = load_backbone(resolve_backbone(cfg.backbone), cfg.device, cfg.dtype)
        lora_params = add_lora(self.backbone.unet, cfg.lora, seed=derive_seed(cfg.seed, 0, "lora-init"))
        self.oracle = self.task.oracle_factory()
        self.ledger = FeedbackLedger(self.dir / LEDGER_FILE, cfg.budget, cfg.run_id)
        if self.labeller is None:
            self.evaluator = SimulatedEvaluator(self.oracle, cfg.evaluator, self.ledger, cfg.seed,
                                                policy=self.oracle_policy, task=cfg.task)
        else:
            self.evaluator = WebEvaluator(self.oracle, cfg.evaluator, self.ledger, cfg.seed, server=self.labeller,
                                          run_dir=self.dir, task=cfg.task, policy=self.oracle_policy)
        section = settings_section(cfg.method)
        ctx = RunContext(settings=getattr(cfg, section) if section else None, sampler=cfg.sampler,
                         seed=cfg.seed, backbone=self.backbone, task=self.task, evaluator=self.evaluator,
                         reached=self.hooks.reached, lora_params=lora_params)
        self.method = get_algorithm(cfg.method)(ctx)
        self.config_hash = run_config_hash(cfg)
        self.git_sha = git_sha()
        # sha256 of every adapter saved so far (name -> hash): the checkpoint and DONE.json record
        # them, so that a resume and `hero-bench verify` can tell a modified file (hero_bench.integrity)
        self.adapters: dict[str, str] = {}

    # -- checkpoint -----------------------------------------------------------------------------
    def save_checkpoint(self, state: RunState) -> None:
        atomic_torch_save(self.dir / CHECKPOINT_FILE, {
            "format": CHECKPOINT_FORMAT,
            "run_id": self.cfg.run_id,
            "config_hash": self.config_hash,
            "task_version": self.task.version,
            # no generator states: every draw of epoch e comes from a fresh generator seeded by
            # (seed, e, purpose) (hero_bench.algorithms.base), so (seed, epoch) IS the RNG state
            "rng": {"scheme": "derived-per-epoch", "seed": self.cfg.seed, "next_epoch": state.epoch + 1},
            "epoch": state.epoch,
            "feedback_used": state.feedback_used,
            "queries": state.queries,
            "images_generated": state.images_generated,
            # with the ledger's length and head hash: a ledger later found shorter, or with another
            # head, lost or rewrote labels this state was computed from (integrity.check_resume)
            "ledger": {"feedback_used": self.ledger.feedback_used, "queries": self.ledger.queries,
                       **ledger_state(self.ledger)},
            "adapters": dict(self.adapters),
            "lora": {k: v.cpu() for k, v in lora_state_dict(self.backbone.unet).items()},
            "method": self.method.state_dict(),
            "eval_rows": state.eval_rows,
            "train_rows": state.train_rows,
        })

    def load_checkpoint(self) -> RunState:
        path = self.dir / CHECKPOINT_FILE
        try:
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any unreadable checkpoint means the same to the user
            raise HeroBenchError(f"checkpoint {path} cannot be read ({type(exc).__name__}: {exc}); "
                                 "delete it to restart the run from its ledger") from None
        if ckpt.get("format") != CHECKPOINT_FORMAT or ckpt.get("config_hash") != self.config_hash:
            raise HeroBenchError(f"checkpoint {path} was written by a different run or version "
                                 f"(config hash {ckpt.get('config_hash')} vs {self.config_hash})")
        # a task's prompts or criterion may change between versions (hero_bench.tasks.Task.version):
        # continuing would train later rounds on another task; checkpoints before the field are version 1's
        if ckpt.get("task_version", 1) != self.task.version:
            raise HeroBenchError(
                f"checkpoint {path} was written under version {ckpt.get('task_version', 1)} of task "
                f"{self.task.name!r}, and this code defines version {self.task.version} (its prompts or "
                "criterion changed); move the run folder aside, or give the run another --out, to start afresh")
        check_resume(self.dir, self.ledger, ckpt)
        self.adapters = recorded_adapters(self.dir, ckpt)
        if self.ledger.used_before(ckpt["epoch"] + 1) != ckpt["feedback_used"]:
            raise HeroBenchError(
                f"ledger {self.ledger.path} holds {self.ledger.used_before(ckpt['epoch'] + 1)} labels up to epoch "
                f"{ckpt['epoch']} but the checkpoint counted {ckpt['feedback_used']}; the run directory is inconsistent"
            )
        load_lora_state_dict(self.backbone.unet, ckpt["lora"])
        self.method.load_state_dict(ckpt["method"])
        return RunState(epoch=ckpt["epoch"], feedback_used=ckpt["feedback_used"], queries=ckpt["queries"],
                        images_generated=ckpt["images_generated"], eval_rows=ckpt["eval_rows"],
                        train_rows=ckpt["train_rows"])

    def write_tables(self, state: RunState) -> None:
        """eval.csv and train_log.csv, rewritten whole (atomically) from the checkpointed rows."""
        atomic_write_text(self.dir / EVAL_FILE, rows_to_csv(state.eval_rows, EVAL_COLUMNS))
        atomic_write_text(self.dir / TRAIN_LOG_FILE, rows_to_csv(state.train_rows, train_log_columns(state.train_rows)))

    # -- evaluation -----------------------------------------------------------------------------
    def evaluate(self, state: RunState) -> dict:
        name = adapter_name(state.epoch)  # lora/epoch_XXXX.safetensors
        save_lora(self.backbone.unet, self.dir / name)
        self.adapters[name] = file_sha256(self.dir / name)
        result = self.evaluation(state.epoch)
        row = eval_row(self.cfg, state.epoch, state.feedback_used, state.queries, state.images_generated, result,
                       self.oracle, self.task.version, self.config_hash, self.git_sha)
        state.eval_rows.append(row)
        return row

    def evaluation(self, epoch: int) -> dict:
        """``evaluate_model`` of the current weights; at epoch 0 with all-zero adapters (the
        pretrained model itself) looked up in, or added to, the shared cache when the run has one."""
        def compute() -> dict:
            return evaluate_model(self.backbone, self.task, self.oracle, self.cfg.sampler, self.cfg.eval)

        if epoch != 0 or self.pretrained_eval_cache is None or not adapters_are_zero(self.backbone.unet):
            return compute()
        fields = key_fields(self.backbone, self.task, self.oracle, self.cfg.sampler, self.cfg.eval, self.cfg.tier)
        result, self.pretrained_eval_reused = self.pretrained_eval_cache.get_or_compute(fields, compute)
        return result

    # -- the loop -------------------------------------------------------------------------------
    def train(self) -> RunState | None:
        # one process per run folder: a second one (a workflow started twice, a user's retry while
        # the first still runs) would append to the same ledger and race on the checkpoint
        created = not self.dir.exists()
        try:
            with exclusive_folder(self.dir):
                try:
                    # a process killed inside an atomic write leaves its temporary file; nobody else
                    # writes here while we hold the lock, so every such file is garbage
                    remove_stale_temporaries(self.dir)
                    return self._train()
                except BaseException:
                    # a run refused before it wrote anything (a backbone that cannot load, an
                    # oracle that cannot start) leaves no empty folder to trip the corrected command
                    if created and not any(self.dir.iterdir()):
                        self.dir.rmdir()
                    raise
        except FolderBusyError:
            raise HeroBenchError(f"{self.dir} is being trained by another process; wait for it to end, "
                                 "or give this run another --out") from None

    def _train(self) -> RunState | None:
        fresh = not (self.dir / CONFIG_FILE).exists()
        if not fresh:  # a resume: the cheap config comparison before any model is loaded
            self.check_config()
            if (self.dir / DONE_FILE).exists():
                self.hooks.already_complete(self)
                return None
        t_start = time.perf_counter()
        self.setup()
        if fresh:  # written once backbone, task and oracle loaded: a run refused at load leaves no config.yaml
            self.check_config()
        self.hooks.planned(self, epochs_to_budget(self.method, self.cfg.budget))
        state = self.start()
        self.write_tables(state)

        self.hooks.training(self, state)
        try:
            while (n := self.next_batch_size(state)) > 0:
                self.run_epoch(state, n)
        finally:
            self.hooks.closed(self)

        self.hooks.reached("end.before_done")
        self.write_done(state, time.perf_counter() - t_start)
        return state

    def start(self) -> RunState:
        """The state the epochs continue from: the checkpoint's, or a fresh run's (the pretrained
        model evaluated as epoch 0 when scheduled, and checkpointed)."""
        if (self.dir / CHECKPOINT_FILE).exists():
            state = self.load_checkpoint()
            self.hooks.resumed(self, state)
            return state
        state = RunState()
        if self.cfg.eval.at_start or not self.method.trains:
            t0 = time.perf_counter()
            row = self.evaluate(state)
            self.hooks.evaluated_pretrained(self, row, time.perf_counter() - t0)
        self.save_checkpoint(state)
        self.hooks.reached("start.after_checkpoint")
        return state

    def next_batch_size(self, state: RunState) -> int:
        """The next epoch's batch, sized from the run's own counter (0: the run is over)."""
        if not self.method.trains:
            return 0
        return self.method.batch_size(self.cfg.budget - state.feedback_used)

    def run_epoch(self, state: RunState, n: int) -> None:
        cfg, method = self.cfg, self.method
        epoch = state.epoch + 1
        t0 = time.perf_counter()
        batch = method.sample(epoch, n)
        t1 = time.perf_counter()
        self.hooks.reached(f"epoch{epoch}.after_sampling")
        feedback = method.label(epoch, batch)
        t2 = time.perf_counter()
        self.hooks.reached(f"epoch{epoch}.after_feedback")
        metrics = method.update(epoch, batch, feedback)
        t3 = time.perf_counter()
        self.hooks.reached(f"epoch{epoch}.after_update")

        state.epoch = epoch
        state.feedback_used += n
        state.images_generated += len(batch.traj)
        state.queries = self.ledger.queries
        if self.ledger.feedback_used != state.feedback_used:
            raise HeroBenchError(f"ledger counts {self.ledger.feedback_used} labels after epoch {epoch}, "
                                 f"the run counts {state.feedback_used}; refusing to continue")
        last = method.batch_size(cfg.budget - state.feedback_used) == 0
        eval_s = 0.0
        if epoch % cfg.eval.every_epochs == 0 or last:
            self.evaluate(state)
            eval_s = time.perf_counter() - t3
        self.hooks.reached(f"epoch{epoch}.after_eval")
        row = {"epoch": epoch, "n_images": n, "feedback_used": state.feedback_used, "queries": state.queries,
               "images_generated": state.images_generated, **metrics,
               "sample_s": round(t1 - t0, 3), "label_s": round(t2 - t1, 3), "update_s": round(t3 - t2, 3),
               "eval_s": round(eval_s, 3), "epoch_s": round(time.perf_counter() - t0, 3)}
        state.train_rows.append(row)
        self.save_checkpoint(state)
        self.hooks.reached(f"epoch{epoch}.after_checkpoint")
        self.write_tables(state)
        self.hooks.epoch_done(self, state, row)

    def write_done(self, state: RunState, wall_s: float) -> None:
        """DONE.json: the run's totals, final success and provenance; its presence ends the run."""
        final = state.eval_rows[-1] if state.eval_rows else {}
        atomic_write_json(self.dir / DONE_FILE, {
            "run_id": self.cfg.run_id,
            "epochs": state.epoch,
            "feedback_used": state.feedback_used,
            "queries": state.queries,
            "images_generated": state.images_generated,
            "final_success_rate": final.get("success_rate"),
            "final_transfer_success_rate": final.get("transfer_success_rate"),
            "config_hash": self.config_hash,
            "task_version": self.task.version,
            "git_sha": self.git_sha,
            "wall_s_this_process": round(wall_s, 3),
            "environment": environment(),
            # the final ledger length and head, the checkpoint's and the adapters' sha256
            "integrity": done_record(self.dir, self.ledger, self.adapters),
        })


def _diff_keys(a: Any, b: Any, prefix: str = "") -> set[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out: set[str] = set()
        for k in set(a) | set(b):
            out |= _diff_keys(a.get(k), b.get(k), f"{prefix}{k}.")
        return out
    return set() if a == b else {prefix.rstrip(".")}


def train(cfg: RunConfig, run_dir: str | Path, progress: bool = True,
          hooks: Sequence[RunHooks] = (), oracle_policy: OracleCallPolicy | None = None,
          labeller: LabellingServer | None = None,
          pretrained_eval_cache: str | Path | None = None) -> RunState | None:
    """Train (or resume, or skip if complete) the run ``cfg`` in ``run_dir``; ``oracle_policy`` is how
    the evaluator calls the task's oracle (``feedback.OracleCallPolicy``; None: its defaults);
    ``labeller``: a started ``web_server.LabellingServer`` whose page a person labels on (None: the
    task's oracle labels); ``pretrained_eval_cache``: a folder where the pretrained model's
    evaluation (epoch 0) is shared with other runs (``hero_bench.pretrained_eval``; None: computed here).

    ``progress`` shows a progress bar and a line per epoch on stderr; ``hooks`` are further
    callbacks (a test's ``run_hooks.CrashAt``).  HERO_BENCH_CRASH_AT in the environment installs a
    crash point as well, so that a test can kill a command-line run (``run_hooks.crash_from_env``),
    and HERO_BENCH_TRACE a file that records when each point is reached (``run_hooks.TraceTo``)."""
    return Run(cfg, run_dir, progress=progress,
               hooks=trace_from_env() + crash_from_env() + list(hooks), oracle_policy=oracle_policy,
               labeller=labeller,
               pretrained_eval_cache=None if pretrained_eval_cache is None else PretrainedEvalCache(pretrained_eval_cache),
               ).train()
