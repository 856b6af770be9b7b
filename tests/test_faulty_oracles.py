"""Faulty oracles: an oracle that raises, returns a non-finite score or the wrong number of results,
or hangs past the time limit is asked again (``OracleCallPolicy``), is never counted as feedback,
and, when no attempt works, stops the run with one line naming the task, the oracle and the batch,
leaving the ledger as it was; rerunning after the oracle is fixed ends like a run that never failed.

Two levels: the evaluator on hand-made oracle answers (every protocol, every failure mode, fast),
and micro HERO runs on the smoke tier (the whole run, compared byte for byte with a clean run).
"""

from __future__ import annotations

import csv
import dataclasses
import math
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest
import torch

import hero_bench.oracle_calls as oracle_calls
import hero_bench.runner as runner
from hero_bench.cli import main
from hero_bench.errors import ConfigError, OracleFailedError
from hero_bench.feedback import EvaluatorConfig, FeedbackLedger, OracleCallPolicy, SimulatedEvaluator
from hero_bench.presets import build_run_config
from hero_bench.run_config import config_yaml
from hero_bench.runner import train
from hero_bench.tasks import get_task
from oracles.base import OracleResult

MODES = ("raises", "nan", "wrong_count", "hang")

# a hung call waits at most this long (then answers late); far beyond every timeout below, so a
# call is abandoned only because of the timeout, never because the hang happened to end
HANG_CAP_S = 5.0
# every hanging fake oracle of this module waits on this event; set at the end of each test so that
# abandoned calls end at once instead of lingering in the background
_release = threading.Event()


@pytest.fixture(autouse=True)
def _release_hung_calls():
    _release.clear()
    yield
    _release.set()


class Faulty:
    """Wraps an oracle: answers ``healthy_first`` calls, then fails ``failures`` calls (math.inf =
    every call) in one of the ``MODES``, then answers again.  ``fixed()`` stops all failures."""

    def __init__(self, oracle, mode, failures, healthy_first=0):
        assert mode in MODES
        self.oracle, self.mode, self.failures, self.healthy_first = oracle, mode, failures, healthy_first
        self.name, self.version = oracle.name, oracle.version
        self.calls = 0
        self.faults = 0

    def __call__(self, images, prompts, metadata):
        self.calls += 1
        if self.calls <= self.healthy_first or self.faults >= self.failures:
            return self.oracle(images, prompts, metadata)
        self.faults += 1
        if self.mode == "raises":
            raise RuntimeError("simulated outage:\n  connection reset")  # a multi-line message
        if self.mode == "hang":
            _release.wait(HANG_CAP_S)
            # the late answer differs from the real one: used, it would change the labels
            return [OracleResult(success=True, score=1.0) for _ in images]
        results = self.oracle(images, prompts, metadata)
        if self.mode == "nan":
            return [dataclasses.replace(r, score=math.nan) if i == 1 else r for i, r in enumerate(results)]
        return results[:-1]  # wrong_count


# ----------------------------------------------------------------------------------------------
# The evaluator (hand-made answers)
# ----------------------------------------------------------------------------------------------


class MetadataOracle:
    """Answers the (success, score) written into each image's metadata."""

    name = "fake"
    version = "0"

    def __call__(self, images, prompts, metadata):
        return [OracleResult(bool(m["success"]), float(m["score"])) for m in metadata]


SPEC = {1: [(1, 0.9), (0, 0.2), (0, 0.4), (1, 0.7)],
        2: [(0, 0.1), (1, 0.95), (0, 0.3), (1, 0.5), (0, 0.6), (1, 0.8)]}
FAST = OracleCallPolicy(timeout_s=0.2, retries=2, backoff_s=0.01)  # trivial oracle: 0.2 s is ample


def batch(epoch):
    spec = SPEC[epoch]
    images = np.zeros((len(spec), 4, 4, 3), dtype=np.uint8)
    return images, ["a prompt"] * len(spec), [{"success": s, "score": x} for s, x in spec]


def ask(ev, method, epoch, previous=None):
    """One evaluator call of ``method`` on the batch of ``epoch``; returns its answer, comparable."""
    images, prompts, metadata = batch(epoch)
    if method == "hero":
        fb = ev.hero(images, prompts, metadata, epoch=epoch, current_best=previous)
        return fb.good.tolist(), fb.best_index, fb.best
    if method == "d3po":
        fb = ev.d3po(images, prompts, metadata, groups=[i // 2 for i in range(len(images))], epoch=epoch)
        return fb.success.tolist(), fb.pairs
    return ev.ddpo(images, prompts, metadata, epoch=epoch).tolist()


def evaluator(path, oracle, policy=FAST):
    ledger = FeedbackLedger(path / "ledger.jsonl", budget=100, run_id="run")
    # label noise on: a retry must not change which labels are flipped
    return SimulatedEvaluator(oracle, EvaluatorConfig(flip_prob=0.3, best_temperature=0.5), ledger, seed=3,
                              policy=policy, task="anomaly")


def clean_ledger(tmp_path, method):
    """(answer of epoch 2, ledger bytes) of an evaluator whose oracle never fails."""
    ev = evaluator(tmp_path / "clean", MetadataOracle())
    first = ask(ev, "hero" if method == "hero" else method, 1)
    answer = ask(ev, method, 2, previous=first[2] if method == "hero" else None)
    return answer, (tmp_path / "clean" / "ledger.jsonl").read_bytes()


@pytest.fixture
def sleeps(monkeypatch):
    """The back-off waits the evaluator asked for (recorded, then really slept)."""
    waited = []
    real = oracle_calls._sleep

    def record(seconds):
        waited.append(seconds)
        real(seconds)

    monkeypatch.setattr(oracle_calls, "_sleep", record)
    return waited


@pytest.mark.parametrize("method", ["hero", "d3po", "ddpo"])
@pytest.mark.parametrize("mode", MODES)
def test_transient_fault_is_retried_and_labels_like_a_clean_oracle(mode, method, tmp_path, sleeps):
    """Faults on as many attempts as there are retries: the last attempt answers, and the answer
    and the ledger are those of an oracle that never failed (bytes, label noise included)."""
    answer, ledger_bytes = clean_ledger(tmp_path, method)
    (tmp_path / "faulty").mkdir()
    oracle = Faulty(MetadataOracle(), mode, failures=FAST.retries, healthy_first=1)
    ev = evaluator(tmp_path / "faulty", oracle)
    first = ask(ev, "hero" if method == "hero" else method, 1)
    assert ask(ev, method, 2, previous=first[2] if method == "hero" else None) == answer
    assert (tmp_path / "faulty" / "ledger.jsonl").read_bytes() == ledger_bytes
    assert oracle.calls == 1 + FAST.retries + 1
    assert sleeps == [0.01, 0.02]  # back-off before each retry, doubled


@pytest.mark.parametrize("method", ["hero", "d3po", "ddpo"])
@pytest.mark.parametrize("mode", MODES)
def test_permanent_fault_fails_in_one_line_and_records_nothing(mode, method, tmp_path, sleeps):
    """No attempt answers: OracleFailedError naming the task, the oracle and the batch, in one line;
    the ledger keeps its bytes and its count; the same evaluator, its oracle fixed, then labels the
    batch exactly as a clean one."""
    answer, ledger_bytes = clean_ledger(tmp_path, method)
    (tmp_path / "faulty").mkdir()
    oracle = Faulty(MetadataOracle(), mode, failures=math.inf, healthy_first=1)
    ev = evaluator(tmp_path / "faulty", oracle)
    first = ask(ev, "hero" if method == "hero" else method, 1)
    before = (tmp_path / "faulty" / "ledger.jsonl").read_bytes()
    used = ev.ledger.feedback_used
    with pytest.raises(OracleFailedError) as failure:
        ask(ev, method, 2, previous=first[2] if method == "hero" else None)
    line = str(failure.value)
    assert "\n" not in line
    assert line.startswith(f"task anomaly, oracle fake (version 0): no valid answer for the {method.upper()} "
                           "batch of epoch 2 (6 images) in 3 attempt(s) (2 retries): each time it ")
    why = {"raises": "raised RuntimeError: simulated outage: connection reset",
           "nan": "returned the non-finite score nan for image(s) [1]",
           "wrong_count": "returned 5 results for 6 images",
           "hang": "gave no answer within 0.2 s (the call was abandoned and may still be running in the background)"}
    assert why[mode] in line
    assert line.endswith("rerun the same command to resume the run")
    assert oracle.calls == 1 + 3 and sleeps == [0.01, 0.02]  # no wait after the last attempt
    assert (tmp_path / "faulty" / "ledger.jsonl").read_bytes() == before
    assert ev.ledger.feedback_used == used and list(ev.ledger.records(epoch=2)) == []

    oracle.failures = 0  # fixed
    assert ask(ev, method, 2, previous=first[2] if method == "hero" else None) == answer
    assert (tmp_path / "faulty" / "ledger.jsonl").read_bytes() == ledger_bytes


def test_different_faults_are_listed_per_attempt(tmp_path, sleeps):
    class Changing:
        name, version = "fake", "0"
        calls = 0

        def __call__(self, images, prompts, metadata):
            self.calls += 1
            if self.calls == 1:
                raise ValueError("bad")
            return [OracleResult(True, 1.0)] * (len(images) + self.calls)

    ev = evaluator(tmp_path, Changing(), OracleCallPolicy(timeout_s=None, retries=1, backoff_s=0))
    with pytest.raises(OracleFailedError, match=r"in 2 attempt\(s\) \(1 retries\): attempt 1 raised ValueError: bad; "
                                                r"attempt 2 returned 8 results for 6 images\."):
        ask(ev, "ddpo", 2)


def test_malformed_results_are_a_fault(tmp_path, sleeps):
    """Results must carry a true/false success and a numeric score (not None, not a string)."""
    for bad in ([None] * 6, [OracleResult(1, 0.5)] * 6, [OracleResult(True, "0.5")] * 6):
        ev = evaluator(tmp_path, lambda images, prompts, metadata, bad=bad: bad, OracleCallPolicy(retries=0))
        with pytest.raises(OracleFailedError, match="returned a malformed result for image 0"):
            ask(ev, "ddpo", 2)
    assert not (tmp_path / "ledger.jsonl").exists() or (tmp_path / "ledger.jsonl").read_bytes() == b""


def test_no_timeout_calls_the_oracle_in_the_callers_thread(tmp_path):
    seen = []

    def oracle(images, prompts, metadata):
        seen.append(threading.current_thread())
        return MetadataOracle()(images, prompts, metadata)

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    ask(evaluator(tmp_path / "a", oracle, OracleCallPolicy(timeout_s=None)), "ddpo", 2)
    ask(evaluator(tmp_path / "b", oracle, OracleCallPolicy(timeout_s=5)), "ddpo", 2)
    assert seen[0] is threading.current_thread() and seen[1] is not threading.current_thread()
    assert seen[1].daemon  # an abandoned call never keeps the process alive


def test_policy_validation():
    assert OracleCallPolicy() == OracleCallPolicy(timeout_s=600.0, retries=2, backoff_s=2.0)
    assert [OracleCallPolicy(backoff_s=1.5).delay_before(k) for k in (1, 2, 3)] == [1.5, 3.0, 6.0]
    for bad, key in [({"timeout_s": 0}, "--oracle-timeout"), ({"timeout_s": math.inf}, "--oracle-timeout"),
                     ({"retries": -1}, "--oracle-retries"), ({"retries": 1.0}, "--oracle-retries"),
                     ({"backoff_s": -0.1}, "--oracle-backoff"), ({"backoff_s": math.nan}, "--oracle-backoff")]:
        with pytest.raises(ConfigError, match=key):
            OracleCallPolicy(**bad)
    with pytest.raises(TypeError, match="OracleCallPolicy"):
        SimulatedEvaluator(MetadataOracle(), EvaluatorConfig(), None, 0, policy={"retries": 1})


# ----------------------------------------------------------------------------------------------
# Whole runs (smoke tier, tiny backbone)
# ----------------------------------------------------------------------------------------------

MICRO = ["sampler.steps=2", "eval.n_images=4", "eval.batch_size=4", "hero.images_per_epoch=4",
         "hero.triplet_passes=2", "hero.ppo.timesteps_per_sample=1", "hero.ppo.train_batch_size=2",
         "hero.ppo.grad_accum_steps=1", "eval.every_epochs=2",
         # label noise on: the flips of a retried epoch must be those of a clean run
         "evaluator.flip_prob=0.25"]
BUDGET = 12  # 3 epochs of 4 images; the faults hit epoch 2
# the shapes oracle answers 4 tiny images in ~0.03 s: 0.5 s never cuts off a healthy call
POLICY = OracleCallPolicy(timeout_s=0.5, retries=2, backoff_s=0)
COMPARED = ("eval.csv", "ledger.jsonl", "lora/epoch_0002.safetensors", "lora/epoch_0003.safetensors")


@pytest.fixture(scope="module", autouse=True)
def _runs_setup():
    """One torch thread (fast on a shared machine) and a fixed provenance string, so that the
    eval.csv of runs made minutes apart compare equal while the checkout changes."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HERO_BENCH_GIT_SHA", "test-faulty-oracles")
        yield
    torch.set_num_threads(previous)


def run_config(backbone_dir):
    return build_run_config("smoke", "anomaly", "hero", seed=5, budget=BUDGET, backbone=str(backbone_dir),
                            overrides=MICRO)


def train_log_without_timings(run_dir):
    with open(run_dir / "train_log.csv", newline="") as fh:
        return [{k: v for k, v in r.items() if not k.endswith("_s")} for r in csv.DictReader(fh)]


def assert_same_results(reference, run_dir):
    for name in COMPARED:
        assert (run_dir / name).read_bytes() == (reference / name).read_bytes(), name
    assert train_log_without_timings(run_dir) == train_log_without_timings(reference)
    assert (run_dir / "DONE.json").exists()


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory, tiny_backbone_dir):
    out = tmp_path_factory.mktemp("clean")
    train(run_config(tiny_backbone_dir), out, progress=False, oracle_policy=POLICY)
    return out


def faulty_evaluators(monkeypatch, mode, failures):
    """Make every evaluator the runner builds ask a ``Faulty`` wrapper of the task's oracle that
    answers epoch 1 and then fails ``failures`` calls; the wrappers built are returned (a list)."""
    built = []
    real = runner.SimulatedEvaluator

    def build(oracle, *args, **kwargs):
        assert kwargs["policy"] is POLICY and kwargs["task"] == "anomaly"  # the runner passes them through
        built.append(Faulty(oracle, mode, failures, healthy_first=1))
        return real(built[-1], *args, **kwargs)

    monkeypatch.setattr(runner, "SimulatedEvaluator", build)
    return built


@pytest.mark.parametrize("mode", MODES)
def test_run_with_a_transient_fault_equals_the_clean_run(mode, clean_run, tmp_path, tiny_backbone_dir, monkeypatch):
    built = faulty_evaluators(monkeypatch, mode, failures=POLICY.retries)
    train(run_config(tiny_backbone_dir), tmp_path, progress=False, oracle_policy=POLICY)
    assert built[0].faults == POLICY.retries and built[0].calls == 3 + POLICY.retries  # 3 epochs, epoch 2 retried
    assert_same_results(clean_run, tmp_path)


@pytest.mark.parametrize("mode", MODES)
def test_run_with_a_permanent_fault_stops_then_resumes_once_fixed(mode, clean_run, tmp_path, tiny_backbone_dir,
                                                                   monkeypatch):
    oracle = get_task("anomaly").oracle_factory()
    with monkeypatch.context() as m:
        built = faulty_evaluators(m, mode, failures=math.inf)
        with pytest.raises(OracleFailedError) as failure:
            train(run_config(tiny_backbone_dir), tmp_path, progress=False, oracle_policy=POLICY)
    line = str(failure.value)
    assert "\n" not in line
    assert line.startswith(f"task anomaly, oracle {oracle.name} (version {oracle.version}): no valid answer for the "
                           "HERO batch of epoch 2 (4 images) in 3 attempt(s)")
    assert built[0].calls == 1 + 3
    # the ledger holds epoch 1 and nothing of epoch 2; the run is not done
    ledger = FeedbackLedger(tmp_path / "ledger.jsonl", BUDGET, run_config(tiny_backbone_dir).run_id)
    assert {r["epoch"] for r in ledger.records()} == {1} and ledger.feedback_used == 4
    assert not (tmp_path / "DONE.json").exists()

    train(run_config(tiny_backbone_dir), tmp_path, progress=False, oracle_policy=POLICY)  # oracle fixed
    assert_same_results(clean_run, tmp_path)


def test_cli_prints_one_line_and_exits_2(tmp_path, tiny_backbone_dir, monkeypatch, capsys):
    """The flags reach the policy; the error is one line; config.yaml does not depend on them."""
    built = []
    real = runner.SimulatedEvaluator

    def build(oracle, *args, **kwargs):
        assert kwargs["policy"] == OracleCallPolicy(timeout_s=0.5, retries=1, backoff_s=0)
        built.append(Faulty(oracle, "raises", math.inf))
        return real(built[-1], *args, **kwargs)

    monkeypatch.setattr(runner, "SimulatedEvaluator", build)
    argv = ["train", "--tier", "smoke", "--task", "anomaly", "--method", "hero", "--seed", "5",
            "--budget", str(BUDGET), "--backbone", str(tiny_backbone_dir), "--out", str(tmp_path), "--quiet",
            *[a for o in MICRO for a in ("--set", o)]]
    rc = main(argv + ["--oracle-timeout", "0.5", "--oracle-retries", "1", "--oracle-backoff", "0"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1
    assert err.startswith("hero-bench train: error: task anomaly, oracle shapes (version ")
    assert "no valid answer for the HERO batch of epoch 1 (4 images) in 2 attempt(s) (1 retries): each time it " \
           "raised RuntimeError: simulated outage: connection reset. Nothing of this batch" in err
    assert (tmp_path / "config.yaml").read_text() == config_yaml(run_config(tiny_backbone_dir))

    assert main(argv + ["--oracle-retries", "-1"]) == 2
    assert "error: oracle retries (--oracle-retries) must be an integer >= 0, got -1" in capsys.readouterr().err


def test_cli_help_names_the_policy_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    d = OracleCallPolicy()
    assert f"no limit (default: {d.timeout_s:g})" in text
    assert f"before the run stops (default: {d.retries})" in text
    assert f"further one (default: {d.backoff_s:g})" in text


def test_a_hung_oracle_does_not_keep_the_command_alive(tmp_path, tiny_backbone_dir):
    """A real process: its oracle never returns, yet the command ends (exit 2) after the timeout,
    because the abandoned call runs in a daemon thread."""
    script = textwrap.dedent(f"""
        import sys, time
        import hero_bench.runner as runner
        from hero_bench.cli import main

        class Hung:
            name, version = "hung", "1"
            def __call__(self, images, prompts, metadata):
                time.sleep(3600)

        real = runner.SimulatedEvaluator
        runner.SimulatedEvaluator = lambda oracle, *a, **k: real(Hung(), *a, **k)
        sys.exit(main(["train", "--tier", "smoke", "--task", "anomaly", "--method", "hero", "--budget", "4",
                       "--backbone", {str(tiny_backbone_dir)!r}, "--out", {str(tmp_path)!r}, "--quiet",
                       "--threads", "1", "--oracle-timeout", "0.3", "--oracle-retries", "0",
                       "--set", "sampler.steps=2", "--set", "eval.n_images=4", "--set", "eval.batch_size=4",
                       "--set", "hero.images_per_epoch=4"]))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith(
        "hero-bench train: error: task anomaly, oracle hung (version 1): no valid answer for the HERO batch of "
        "epoch 1 (4 images) in 1 attempt(s) (0 retries): each time it gave no answer within 0.3 s (the call was "
        "abandoned and may still be running in the background)")
