#!/usr/bin/env python3
"""Run a command on one GPU of this machine that no other job holds: ``gpu_slot.py -- CMD ...``.

Snakemake limits how many GPU jobs run at once (``--resources gpu=N``) but does not tell a job
which device to use, so concurrent local training jobs would all pick device 0. This wrapper
takes an exclusive ``flock`` on one of N slot files (one per device), exports
``CUDA_VISIBLE_DEVICES=<that device>`` and ``exec``s the command, which keeps the lock until it
(and every child that inherited the lock) exits; a crashed job frees its slot automatically.

Devices, first that applies:
  --devices / $HERO_GPU_DEVICES   a count N (devices 0..N-1) or a comma list ("0,2,3")
  $CUDA_VISIBLE_DEVICES           the devices this process may already use (ids or UUIDs)
  nvidia-smi -L                   every GPU on the machine
Inside a SLURM job ($SLURM_JOB_ID set) SLURM has already assigned the devices: the command runs
unchanged. With no GPU found it also runs unchanged (with a warning).

Lock files: --lock-dir / $HERO_GPU_LOCK_DIR (default /tmp/hero-bench-gpu-slots-<uid>); the same
folder must be used by every workflow sharing the machine's GPUs. When every slot is held the
wrapper waits, polling each second, for at most --timeout / $HERO_GPU_SLOT_TIMEOUT seconds
(default 0 = no limit), then exits 75 (EX_TEMPFAIL).

Standard library only, so any python3 can run it.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import re
import subprocess
import sys
import time

EX_TEMPFAIL = 75
PROG = "gpu_slot"


def log(msg: str) -> None:
    print(f"{PROG}: {msg}", file=sys.stderr, flush=True)


def parse_devices(text: str) -> list[str]:
    """'4' -> ['0', '1', '2', '3']; '0,2' -> ['0', '2']; '' -> []."""
    text = text.strip()
    if not text:
        return []
    if re.fullmatch(r"[0-9]+", text):
        return [str(i) for i in range(int(text))]
    devices = [d.strip() for d in text.split(",") if d.strip()]
    if len(set(devices)) != len(devices):
        raise ValueError(f"device list {text!r} names a device twice")
    return devices


def detect_devices() -> list[str]:
    try:
        out = subprocess.run(
            ["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [str(i) for i, line in enumerate(l for l in out.splitlines() if l.startswith("GPU "))]


def choose_devices(arg: str | None) -> tuple[list[str], str]:
    if arg is not None:
        return parse_devices(arg), "--devices"
    if os.environ.get("HERO_GPU_DEVICES", "").strip():
        return parse_devices(os.environ["HERO_GPU_DEVICES"]), "$HERO_GPU_DEVICES"
    if os.environ.get("CUDA_VISIBLE_DEVICES", "").strip():
        return parse_devices_list(os.environ["CUDA_VISIBLE_DEVICES"]), "$CUDA_VISIBLE_DEVICES"
    return detect_devices(), "nvidia-smi -L"


def parse_devices_list(text: str) -> list[str]:
    """CUDA_VISIBLE_DEVICES is always a list (a lone '3' means device 3, not three devices)."""
    return [d.strip() for d in text.split(",") if d.strip()]


def slot_file(lock_dir: str, device: str) -> str:
    return os.path.join(lock_dir, "gpu-" + re.sub(r"[^A-Za-z0-9_.-]", "_", device) + ".lock")


def try_lock(path: str) -> int | None:
    """Open and exclusively lock ``path`` without blocking; the fd, or None when it is held."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def acquire(devices: list[str], lock_dir: str, timeout: float, poll: float = 1.0) -> tuple[int, str]:
    deadline = time.monotonic() + timeout if timeout > 0 else None
    waited = False
    while True:
        for device in devices:
            fd = try_lock(slot_file(lock_dir, device))
            if fd is not None:
                if waited:
                    log("a slot became free")
                return fd, device
        if deadline is not None and time.monotonic() >= deadline:
            raise TimeoutError(
                f"all {len(devices)} GPU slot(s) {devices} stayed busy for {timeout:g} s "
                f"(lock files in {lock_dir})"
            )
        if not waited:
            log(f"all {len(devices)} GPU slot(s) {devices} are busy; waiting")
            waited = True
        time.sleep(poll)


def run(command: list[str]) -> int:
    """exec the command (never returns on success)."""
    try:
        os.execvp(command[0], command)
    except OSError as exc:
        log(f"error: cannot run {command[0]!r}: {exc}")
        return 127


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=__doc__.split("\n\n")[0],
        usage="%(prog)s [--devices N|LIST] [--lock-dir DIR] [--timeout S] -- COMMAND [ARG ...]",
    )
    parser.add_argument("--devices", default=None, help="a count N or a comma list of device ids")
    parser.add_argument(
        "--lock-dir",
        default=os.environ.get("HERO_GPU_LOCK_DIR") or f"/tmp/hero-bench-gpu-slots-{os.getuid()}",
    )
    parser.add_argument(
        "--timeout", type=float, default=float(os.environ.get("HERO_GPU_SLOT_TIMEOUT") or 0)
    )
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command given (usage: gpu_slot.py [options] -- COMMAND ...)")

    if os.environ.get("SLURM_JOB_ID"):
        # SLURM's gres plugin already set CUDA_VISIBLE_DEVICES for this allocation
        return run(command)

    try:
        devices, source = choose_devices(args.devices)
    except ValueError as exc:
        log(f"error: {exc}")
        return 2
    if not devices:
        log(f"warning: no GPU found ({source}); running the command without a device slot")
        return run(command)

    os.makedirs(args.lock_dir, exist_ok=True)
    try:
        fd, device = acquire(devices, args.lock_dir, args.timeout)
    except TimeoutError as exc:
        log(f"error: {exc}")
        return EX_TEMPFAIL

    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()} {' '.join(command)[:200]}\n".encode())
    os.set_inheritable(fd, True)  # the lock lives as long as the command holds this fd
    os.environ["CUDA_VISIBLE_DEVICES"] = device
    log(f"CUDA_VISIBLE_DEVICES={device} (slot {devices.index(device) + 1} of {len(devices)} from {source})")
    return run(command)


if __name__ == "__main__":
    sys.exit(main())
