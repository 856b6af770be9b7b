"""The labelling page's server under bad requests: wrong or missing token, foreign image ids, path
traversal, wrong label counts, malformed bodies, replayed rounds. Each gets a 4xx with a message,
and the ledger holds exactly the one valid submission. Real HTTP to a real server (uvicorn on a
free loopback port), with the web evaluator blocked in a thread as the training loop would be."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import pytest

from hero_bench.errors import ConfigError
from hero_bench.evaluator_config import EvaluatorConfig
from hero_bench.feedback import DDPO_REWARD, HERO_BEST, HERO_GOOD
from hero_bench.ledger import FeedbackLedger
from hero_bench.web_evaluator import WebEvaluator
from hero_bench.web_server import LabellingClosedError, LabellingServer

N = 4
IMAGES = np.random.default_rng(1).integers(0, 256, size=(N, 16, 16, 3), dtype=np.uint8)
PROMPTS = ["a red circle"] * N
META = [{"objects": []}] * N


def request(server, path, body=None, token="<own>", method=None, raw=None):
    """(status, decoded JSON or bytes) of one HTTP request to ``server``."""
    token = server.token if token == "<own>" else token
    url = f"http://{server.host}:{server.port}{path}" + (f"?token={token}" if token is not None else "")
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    req = urllib.request.Request(url, data=data, method=method or ("POST" if data is not None else "GET"),
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            payload = resp.read()
            status = resp.status
    except urllib.error.HTTPError as exc:
        payload, status = exc.read(), exc.code
    try:
        return status, json.loads(payload)
    except ValueError:
        return status, payload


@pytest.fixture
def waiting(tmp_path):
    """A server with a DDPO round of epoch 1 waiting for labels (the evaluator blocked in a thread)."""
    ledger = FeedbackLedger(tmp_path / "ledger.jsonl", 16, "smoke/anomaly/ddpo/seed0")
    with LabellingServer() as server:
        evaluator = WebEvaluator(None, EvaluatorConfig(), ledger, 0, server=server, run_dir=tmp_path, task="anomaly")
        answer = {}

        def label():
            try:
                answer["r"] = evaluator.ddpo(IMAGES, PROMPTS, META, 1)
            except LabellingClosedError:  # a test that sends no valid submission ends here
                answer["closed"] = True
        loop = threading.Thread(target=label, daemon=True)
        loop.start()
        deadline = time.monotonic() + 30
        while request(server, "/api/round")[1].get("status") != "labelling":
            assert time.monotonic() < deadline
            time.sleep(0.02)
        yield server, ledger, loop, answer


def ids():
    return [f"e0001-i{i:04d}" for i in range(N)]


def test_bad_requests_get_a_4xx_and_change_nothing_then_one_submission_is_recorded_once(waiting, tmp_path):
    server, ledger, loop, answer = waiting
    good = {"epoch": 1, "labels": {i: ("good" if k == 2 else "bad") for k, i in enumerate(ids())}}
    (tmp_path / "secret.txt").write_text("not for the page")
    bad = [
        ("no token", request(server, "/api/round", token=None), 403),
        ("wrong token", request(server, "/api/round", token="guess"), 403),
        ("wrong token, post", request(server, "/api/round/1/labels", good, token="guess"), 403),
        ("foreign image", request(server, "/api/image/e0000-i0000.png"), 404),
        ("traversal", request(server, "/api/image/..%2F..%2Fsecret.txt"), 404),
        ("traversal 2", request(server, "/api/image/%2E%2E%2Fsecret.png"), 404),
        ("too few labels", request(server, "/api/round/1/labels", {"epoch": 1, "labels": {ids()[0]: "good"}}), 422),
        ("foreign id", request(server, "/api/round/1/labels",
                               {"epoch": 1, "labels": {**good["labels"], "e0009-i0000": "good"}}), 422),
        ("bad value", request(server, "/api/round/1/labels", {"epoch": 1, "labels": dict.fromkeys(ids(), 1)}), 422),
        ("other round", request(server, "/api/round/2/labels", {**good, "epoch": 2}), 409),
        ("epoch mismatch", request(server, "/api/round/1/labels", {**good, "epoch": 2}), 422),
        ("not json", request(server, "/api/round/1/labels", raw=b"{labels"), 400),
        ("not a number", request(server, "/api/round/x/labels", good), 422),
    ]
    for name, (status, body), expected in bad:
        assert status == expected, (name, status, body)
        assert isinstance(body, dict) and (body.get("error") or body.get("detail")), (name, body)
    assert len(ledger) == 0 and loop.is_alive()  # nothing recorded, the loop still waits

    status, body = request(server, "/api/image/e0001-i0002.png")
    assert status == 200 and body[:8] == b"\x89PNG\r\n\x1a\n"
    status, body = request(server, "/api/round/1/labels", good)
    assert status == 200, body
    loop.join(timeout=30)
    assert answer["r"].tolist() == [0.0, 0.0, 1.0, 0.0]
    recorded = [(r["image_id"], r["value"], r["extra"]["labeller"]) for r in ledger.records(DDPO_REWARD)]
    assert recorded == [(i, float(k == 2), "web") for k, i in enumerate(ids())]

    # the same round again (double click, reload, second tab): recorded once
    status, body = request(server, "/api/round/1/labels", good)
    assert status == 409 and "already recorded" in body["error"]
    assert len(ledger) == N
    assert FeedbackLedger(tmp_path / "ledger.jsonl", 16, "smoke/anomaly/ddpo/seed0").feedback_used == N


def test_the_page_never_sees_the_ground_truth(waiting):
    server, *_ = waiting
    status, body = request(server, "/api/round")
    assert status == 200 and body["epoch"] == 1 and len(body["images"]) == N
    assert all("metadata" not in image for image in body["images"])
    status, page = request(server, "/")
    assert status == 200 and b"hero-bench labelling" in page


def test_a_recorded_round_is_replayed_without_asking(tmp_path):
    ledger = FeedbackLedger(tmp_path / "ledger.jsonl", 16, "r")
    with LabellingServer() as server:
        evaluator = WebEvaluator(None, EvaluatorConfig(), ledger, 0, server=server, run_dir=tmp_path, task="anomaly")
        loop = threading.Thread(target=lambda: evaluator.hero(IMAGES, PROMPTS, META, 1, None), daemon=True)
        loop.start()
        while request(server, "/api/round")[1].get("status") != "labelling":
            time.sleep(0.02)
        sent = {"epoch": 1, "labels": {i: ("good" if k == 1 else "bad") for k, i in enumerate(ids())}, "best": ids()[3]}
        assert request(server, "/api/round/1/labels", sent)[0] == 200
        loop.join(timeout=30)
    assert [r["value"] for r in ledger.records(HERO_GOOD)] == [False, True, False, True]  # the best counts as good
    assert next(ledger.records(HERO_BEST))["value"]["best"]["image_id"] == ids()[3]
    # a resumed run: a new server nobody labels on, the same round answered from the ledger
    reopened = FeedbackLedger(tmp_path / "ledger.jsonl", 16, "r")
    with LabellingServer() as server:
        again = WebEvaluator(None, EvaluatorConfig(), reopened, 0, server=server, run_dir=tmp_path, task="anomaly")
        feedback = again.hero(IMAGES, PROMPTS, META, 1, None)
    assert feedback.replayed and feedback.good.tolist() == [False, True, False, True] and feedback.best_index == 3


def test_stopping_the_server_ends_a_waiting_round_with_a_clear_error(tmp_path):
    ledger = FeedbackLedger(tmp_path / "ledger.jsonl", 16, "r")
    server = LabellingServer().start()
    evaluator = WebEvaluator(None, EvaluatorConfig(), ledger, 0, server=server, run_dir=tmp_path, task="anomaly")
    errors = []

    def loop():
        try:
            evaluator.ddpo(IMAGES, PROMPTS, META, 1)
        except LabellingClosedError as exc:
            errors.append(str(exc))
    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    while request(server, "/api/round")[1].get("status") != "labelling":
        time.sleep(0.02)
    server.stop()
    thread.join(timeout=30)
    assert errors and "rerun the same command to resume at this round" in errors[0] and len(ledger) == 0


@pytest.mark.parametrize("setting", [{"flip_prob": 0.1}, {"ddpo_reward": "score"}, {"best_temperature": 1.0}])
def test_simulated_noise_settings_are_refused_with_a_person(tmp_path, setting):
    with pytest.raises(ConfigError, match="accepted: the defaults"):
        WebEvaluator(None, EvaluatorConfig(**setting), FeedbackLedger(tmp_path / "l.jsonl", 4, "r"), 0,
                     server=LabellingServer(), run_dir=tmp_path, task="anomaly")
