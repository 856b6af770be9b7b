"""The workflow under failure: runs never share a file, a second invocation on the same folder meets
the first one's lock and is refused, and a workflow SIGKILLed mid-run finishes, after Snakemake's
own recovery commands, with the results of one that never stopped."""

from __future__ import annotations

import collections
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SNAKEFILE = REPO / "Snakefile"
CONFIG_DIR = REPO / "workflows" / "config"
# one task, the four methods, one seed, 6 epochs per run: small, but long enough to be caught running
SMALL = ["tasks=[anomaly]", "methods=[base,hero,ddpo,d3po]", "seeds=[0]", "budget=48"]


def snakemake_cmd(workdir, *args):
    exe = Path(sys.executable).with_name("snakemake")
    exe = str(exe) if exe.exists() else shutil.which("snakemake")
    if not exe:
        pytest.skip("snakemake is not installed")
    return [exe, "--snakefile", str(SNAKEFILE), "--directory", str(workdir), *map(str, args)]


def run(workdir, *args, timeout=600):
    return subprocess.run(snakemake_cmd(workdir, *args), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=timeout)


@pytest.mark.parametrize("config", ["toy-acceptance", "tune"])
def test_no_two_jobs_of_a_workflow_share_a_run_folder_or_log(tmp_path, config):
    proc = run(tmp_path, "--dry-run", "--printshellcmds", "--configfile", CONFIG_DIR / f"{config}.yaml")
    assert proc.returncode == 0, proc.stdout[-3000:]
    outs = re.findall(r"--out (\S+)", proc.stdout)
    logs = re.findall(r"> (results/logs/\S+\.log)", proc.stdout)
    assert len(outs) >= 36 and len(logs) >= len(outs), (len(outs), len(logs))
    for name, paths in (("run folder", outs), ("log", logs)):
        shared = [p for p, n in collections.Counter(paths).items() if n > 1]
        assert not shared, f"{name}s used by more than one job: {shared[:3]}"
    # nor is one run folder inside another's
    folders = sorted(Path(p) for p in set(outs))
    assert not any(b.is_relative_to(a) for a, b in zip(folders, folders[1:]))


def wait_for_a_training_run_in_progress(work, workflow):
    """Until a training run (not the base model's evaluation, which checkpoints and finishes within
    moments) has a checkpoint and no DONE.json yet."""
    deadline = time.monotonic() + 300
    while not [c for c in work.glob("results/runs/smoke/*/*/seed0/checkpoint.pt")
               if c.parent.parent.name != "base" and not (c.parent / "DONE.json").exists()]:
        assert workflow.poll() is None, "the workflow ended before a training run could be interrupted"
        assert time.monotonic() < deadline
        time.sleep(0.02)


def session_processes(sid):
    """Live processes of session ``sid``. A job's ``timeout`` puts itself and the training run in a
    process group of their own, so killing the workflow's process group would leave them running: a
    crash of the whole machine is a kill of the whole session."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()  # after "pid (comm)": state ppid pgrp session
        except (OSError, IndexError):
            continue  # it ended while being read
        if int(fields[3]) == sid and fields[0] != "Z":
            pids.append(int(stat.parent.name))
    return pids


def kill_session(sid):
    deadline = time.monotonic() + 30
    while pids := session_processes(sid):
        assert time.monotonic() < deadline, f"processes of the killed workflow still alive: {pids}"
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.05)


def runs_table(workdir):
    rows = (workdir / "results" / "summary" / "runs.csv").read_text().splitlines()
    return [re.sub(r",[0-9a-f]{12,40}(-dirty)?(?=,|$)", ",<sha>", row) for row in rows]  # git_sha aside


@pytest.mark.slow
def test_a_killed_workflow_finishes_with_the_results_of_an_uninterrupted_one(tmp_path):
    common = ["--cores", "2", "--configfile", CONFIG_DIR / "smoke.yaml", "--config", *SMALL]
    reference = tmp_path / "reference"
    done = run(reference, *common)
    assert done.returncode == 0, done.stdout[-3000:]

    work = tmp_path / "killed"
    first = subprocess.Popen(snakemake_cmd(work, *common), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True)  # its own session: the kill takes all its jobs too
    try:
        wait_for_a_training_run_in_progress(work, first)
    finally:
        kill_session(first.pid)  # at once, everything: a training run is interrupted, resume is tested
        first.wait()
    assert not (work / "results" / "summary" / "runs.csv").exists(), "killed too late to test anything"

    # the killed invocation's lock is the one a running invocation holds: another invocation on the
    # same folder is refused, as it is (the outputs it left incomplete, or the lock, whichever
    # Snakemake meets first) and with --rerun-incomplete (the lock)
    second = run(work, *common, timeout=300)
    assert second.returncode != 0, second.stdout[-2000:]
    assert "Incomplete files" in second.stdout or "cannot be locked" in second.stdout, second.stdout[-2000:]
    third = run(work, *common, "--rerun-incomplete", timeout=300)
    assert third.returncode != 0 and "cannot be locked" in third.stdout, third.stdout[-2000:]

    # Snakemake's recovery after a kill: drop its stale lock, then rerun what was incomplete; the
    # interrupted training jobs resume from their checkpoints
    assert run(work, "--unlock", *common).returncode == 0
    rerun = run(work, *common, "--rerun-incomplete")
    assert rerun.returncode == 0, rerun.stdout[-3000:]
    assert runs_table(work) == runs_table(reference)
    logs = "".join(p.read_text() for p in work.glob("results/logs/**/*.log"))
    assert "resuming it" in logs  # at least one run continued from its checkpoint, not from scratch
