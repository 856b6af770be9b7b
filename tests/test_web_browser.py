"""A person in the loop, played by a test in headless Chromium: whole smoke-tier runs of HERO, DDPO
and D3PO labelled through the page (`hero-bench train --evaluator web`), the labels chosen by the
test from the task's oracle on the saved images, clicked (and typed) on the page. The ledger must
hold exactly what the page sent; a run killed mid-way and started again resumes at the first round
nobody labelled.

Needs Debian's chromium and chromium-driver (`apt-get install chromium chromium-driver`); without
them the test is skipped, unless HERO_BENCH_REQUIRE_BROWSER=1 (set by .ci/run), where it fails.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hero_bench.tasks import get_task

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
SMALL = ["sampler.steps=2", "eval.n_images=2", "eval.batch_size=2", "hero.images_per_epoch=4",
         "hero.ppo.train_batch_size=2", "hero.ppo.timesteps_per_sample=1", "hero.triplet_passes=1",
         "ddpo.images_per_epoch=4", "ddpo.ppo.train_batch_size=2", "ddpo.stat_min_count=2",
         "d3po.group_size=2", "d3po.groups_per_epoch=2", "d3po.timestep_fraction=1.0"]
BUDGETS = {"hero": 8, "ddpo": 12, "d3po": 8}  # 2, 3 and 2 rounds of 4 images
LABEL_KIND = {"hero": "hero_good", "ddpo": "ddpo_reward", "d3po": "d3po_success"}


@pytest.fixture(scope="module")
def browser():
    if not (CHROMIUM and DRIVER):
        message = "headless Chromium and its driver are needed: apt-get install chromium chromium-driver"
        if os.environ.get("HERO_BENCH_REQUIRE_BROWSER") == "1":
            pytest.fail(message)
        pytest.skip(message)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    yield driver
    driver.quit()


class LabelledRun:
    """One `hero-bench train --evaluator web` process and what the test sent through its page."""

    def __init__(self, method, backbone, out):
        self.method, self.out = method, out
        self.cmd = [sys.executable, "-m", "hero_bench", "train", "--tier", "smoke", "--task", "anomaly",
                    "--method", method, "--seed", "0", "--budget", str(BUDGETS[method]), "--backbone", str(backbone),
                    "--out", str(out), "--threads", "1", "--quiet", "--evaluator", "web",
                    *[a for s in SMALL for a in ("--set", s)]]
        self.sent: dict[str, bool] = {}  # image id -> good, as the page sent it
        self.best: dict[int, str | None] = {}  # HERO: epoch -> the best picked (None: kept)
        self.oracle = get_task("anomaly").oracle_factory()

    def start(self):
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     env=dict(os.environ, OMP_NUM_THREADS="1"))
        for line in self.proc.stdout:
            found = re.search(r"label at (http://127\.0\.0\.1:\d+/\?token=\S+)", line)
            if found:
                return found.group(1)
        raise AssertionError(f"no URL printed; exit {self.proc.wait()}")

    def verdicts(self, epoch):
        """The oracle's (success, score) on the saved images of a round: the labels the test gives."""
        saved = json.loads((self.out / "web" / f"e{epoch:04d}" / "round.json").read_text())
        folder = self.out / "web" / f"e{epoch:04d}"
        images = np.stack([np.asarray(Image.open(folder / im["file"]).convert("RGB")) for im in saved["images"]])
        results = self.oracle(images, [im["prompt"] for im in saved["images"]], [im["metadata"] for im in saved["images"]])
        return saved, np.array([r.success for r in results]), np.array([r.score for r in results])


def wait_for_round(driver, epoch, n):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, 240, poll_frequency=0.1).until(
        lambda d: len(d.find_elements(By.CSS_SELECTOR, f'.card[data-id^="e{epoch:04d}-"]')) == n)


def card(driver, image_id):
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, f'.card[data-id="{image_id}"]')


def label_round(driver, run: LabelledRun, epoch, use_keys=False):
    """Label round ``epoch`` on the page as the oracle would, submit, and remember what was sent."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    wait_for_round(driver, epoch, 4)  # every round of these runs has 4 images
    saved, good, score = run.verdicts(epoch)
    ids = [im["id"] for im in saved["images"]]
    assert driver.find_element(By.ID, "epoch").text == str(epoch)
    assert driver.find_element(By.ID, "left").text == str(saved["budget"] - saved["feedback_used"] - len(ids))
    best = None
    if run.method == "hero":  # HERO needs a good and a bad image: the protocol's own fallbacks
        if not good.any():
            good[int(np.argmax(score))] = True
        if good.all():
            good[int(np.argmin(score))] = False
        if saved["current_best"] is None:
            best = ids[int(np.argmax(np.where(good, score, -np.inf)))]
        elif epoch % 2 == 0:  # pick a new best among the good ones in even rounds, keep it otherwise
            best = ids[int(np.argmax(np.where(good, score, -np.inf)))]
    body = driver.find_element(By.TAG_NAME, "body")
    if use_keys:  # the shortcuts: g marks the focused image good, u undoes, arrows move the focus
        body.send_keys("g")
        assert card(driver, ids[0]).get_attribute("data-label") == "good"
        body.send_keys("u")
        assert card(driver, ids[0]).get_attribute("data-label") == "bad"
        for k, image in enumerate(ids):
            if good[k]:
                body.send_keys("g")
            if k < len(ids) - 1:
                body.send_keys(Keys.ARROW_RIGHT)
    else:
        for k, image in enumerate(ids):
            if good[k]:
                card(driver, image).find_element(By.TAG_NAME, "img").click()
    if best is not None:
        card(driver, best).find_element(By.CLASS_NAME, "best-button").click()
    elif run.method == "hero":
        driver.find_element(By.ID, "keep-best").click()
    for k, image in enumerate(ids):
        assert card(driver, image).get_attribute("data-label") == ("good" if good[k] else "bad"), image
    if use_keys:
        body.send_keys(Keys.ENTER)
    else:
        driver.find_element(By.ID, "submit").click()
    WebDriverWait(driver, 120, poll_frequency=0.1).until(
        lambda d: f"round {epoch} recorded" in d.find_element(By.ID, "message").text)
    run.sent.update(zip(ids, map(bool, good)))
    if run.method == "hero":
        run.best[epoch] = best


def ledger_labels(out, kind):
    records = [json.loads(line) for line in (out / "ledger.jsonl").read_text().splitlines()]
    return records, {r["image_id"]: bool(r["value"]) for r in records if r["type"] == "label" and r["kind"] == kind}


@pytest.mark.parametrize("method", ["hero", "ddpo", "d3po"])
def test_a_person_labels_a_whole_run_on_the_page_and_the_ledger_holds_exactly_what_was_sent(
        browser, tiny_backbone_dir, tmp_path, method):
    run = LabelledRun(method, tiny_backbone_dir, tmp_path / "run")
    rounds = BUDGETS[method] // 4
    browser.get(run.start())
    for epoch in range(1, rounds + 1):
        if method == "ddpo" and epoch == 2:
            # kill the whole process (server and loop) while round 2 waits, and start it again: the
            # page (at the new URL and token) continues at round 2, and round 1 is not asked again
            wait_for_round(browser, 2, 4)
            run.proc.send_signal(signal.SIGKILL)
            run.proc.wait()
            _, before = ledger_labels(run.out, LABEL_KIND[method])
            assert before == run.sent  # round 1 was durable before the page moved on
            browser.get(run.start())
        label_round(browser, run, epoch, use_keys=(method == "d3po"))
    assert run.proc.wait(timeout=300) == 0
    assert (run.out / "DONE.json").exists()
    records, labels = ledger_labels(run.out, LABEL_KIND[method])
    assert labels == run.sent and len(labels) == BUDGETS[method]  # exactly what was sent, each once
    assert all(r["extra"].get("labeller") == "web" for r in records if r["type"] == "label")
    if method == "hero":
        picks = {r["epoch"]: r["value"]["best_index"] for r in records if r["kind"] == "hero_best"}
        assert {e: (None if b is None else f"e{e:04d}-i{i:04d}") for e, (b, i) in
                ((e, (run.best[e], picks[e])) for e in picks)} == run.best
    if method == "d3po":  # the pairs follow from the classes sent, within each group
        pairs = {r["key"]: r["value"]["preferred"] for r in records if r["kind"] == "d3po_pair"}
        for key, preferred in pairs.items():
            a, b = key.split("/")
            assert run.sent[a] != run.sent[b]
            assert run.sent[f"{a[:6]}i{preferred:04d}"]
    verify = subprocess.run([sys.executable, "-m", "hero_bench", "verify", str(run.out)], capture_output=True, text=True)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    agreement = subprocess.run([sys.executable, "-m", "hero_bench", "agreement", str(run.out)],
                               capture_output=True, text=True)
    # the labels followed the oracle (HERO's forced good/bad aside): full agreement for DDPO and D3PO
    assert agreement.returncode == 0, agreement.stderr
    if method != "hero":
        assert "agreement 1.000" in agreement.stdout, agreement.stdout
