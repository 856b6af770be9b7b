"""hero_bench.provenance: what a run records of where it came from, the commit (and what it records when git is slow) and the processor."""

from __future__ import annotations

import subprocess

import pytest

from hero_bench import provenance


@pytest.fixture
def fake_git(monkeypatch):
    """Replace subprocess.run inside provenance with answers per git subcommand; yields the calls."""
    calls = []
    answers = {}

    def run(cmd, **kwargs):
        calls.append((cmd, kwargs))
        answer = answers[cmd[1]]
        if isinstance(answer, BaseException):
            raise answer
        return subprocess.CompletedProcess(cmd, 0, stdout=answer, stderr="")

    monkeypatch.delenv("HERO_BENCH_GIT_SHA", raising=False)
    monkeypatch.setattr(provenance.subprocess, "run", run)
    provenance.git_sha.cache_clear()
    yield answers, calls
    provenance.git_sha.cache_clear()


def test_a_clean_and_a_dirty_checkout(fake_git):
    answers, calls = fake_git
    answers.update({"rev-parse": "abc123\n", "status": ""})
    assert provenance.git_sha() == "abc123"
    provenance.git_sha.cache_clear()
    answers["status"] = " M hero_bench/runner.py\n"
    assert provenance.git_sha() == "abc123+dirty"
    # status must not take the index lock that concurrent runs of the same checkout contend for
    assert all(kw["env"]["GIT_OPTIONAL_LOCKS"] == "0" for _, kw in calls)
    assert all(kw["timeout"] == provenance.GIT_TIMEOUT_S for _, kw in calls)


def test_a_slow_status_keeps_the_commit(fake_git):
    """Under load `git status` can outlast its limit; the commit is still known and recorded."""
    answers, _ = fake_git
    answers.update({"rev-parse": "abc123\n", "status": subprocess.TimeoutExpired(["git", "status"], 60)})
    assert provenance.git_sha() == "abc123+dirty?"


def test_no_commit_is_unknown(fake_git):
    answers, _ = fake_git
    answers.update({"rev-parse": subprocess.CalledProcessError(128, ["git", "rev-parse"]), "status": ""})
    assert provenance.git_sha() == "unknown"
    provenance.git_sha.cache_clear()
    answers["rev-parse"] = FileNotFoundError("git")
    assert provenance.git_sha() == "unknown"


def test_the_environment_override_wins(fake_git, monkeypatch):
    answers, calls = fake_git
    monkeypatch.setenv("HERO_BENCH_GIT_SHA", "deadbeef")
    assert provenance.git_sha() == "deadbeef" and not calls


def test_the_processor_is_read_from_cpuinfo(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 9B14\n\nprocessor\t: 1\n"
                    "model name\t: AMD EPYC 9B14\n")
    assert provenance.cpu_model(info) == "AMD EPYC 9B14"
    # no cpuinfo (macOS, Windows): whatever the platform module says, never an empty string
    assert provenance.cpu_model(tmp_path / "missing") != ""
    env = provenance.environment()
    assert env["cpu"] and env["cpu_capability"]
