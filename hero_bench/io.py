"""Durable, atomic file output.

A crash must never leave a half-written file that Snakemake (or a resume) would accept, so every
output goes to a temporary file in the same directory, is fsync'ed, then renamed over the target.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

TEMP_SUFFIX = ".tmp"
"""Ending of the temporary files ``atomic_path`` writes (named ``.<target name>.<random>.tmp``)."""


def fsync_dir(path: Path) -> None:
    """Make a rename or a new file in ``path`` durable (best effort: some filesystems refuse)."""
    try:
        fd = os.open(str(path), os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``target``; on success it is fsync'ed and renamed to ``target``."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=TEMP_SUFFIX, dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, target)
        fsync_dir(target.parent)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def atomic_write_bytes(target: str | os.PathLike, data: bytes) -> None:
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(target: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(target, text.encode("utf-8"))


def atomic_write_json(target: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(target, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def atomic_torch_save(target: str | os.PathLike, obj: Any) -> None:
    # deferred: torch (hero_bench.io is foundation; the light commands import it)
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(target, buf.getvalue())


def atomic_save_figure(fig, target: str | os.PathLike, **kwargs) -> None:
    """Save a matplotlib figure atomically (format from the target's suffix)."""
    target = Path(target)
    with atomic_path(target) as tmp:
        fig.savefig(tmp, format=target.suffix.lstrip(".") or "png", **kwargs)


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporary files ``atomic_path`` left in ``folder`` and its subfolders when a
    process was killed between creating and renaming them; returns what was removed.

    Only safe while nobody else writes into ``folder``: call it under ``exclusive_folder``.
    """
    removed = []
    for path in Path(folder).rglob(f".*{TEMP_SUFFIX}"):
        if path.is_file():
            path.unlink()
            removed.append(path)
    return removed


class FolderBusyError(OSError):
    """Another process holds the folder's lock."""


@contextlib.contextmanager
def exclusive_folder(folder: str | os.PathLike) -> Iterator[Path]:
    """Hold an exclusive lock on ``folder`` (created if missing) for the block, or raise FolderBusyError.

    The lock is ``flock`` on the directory itself: no lock file to leave behind or to go stale, and
    the kernel releases it when the holder dies, however it dies (a SIGKILL included).
    """
    path = Path(folder)
    path.mkdir(parents=True, exist_ok=True)
    fd = os.open(str(path), os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise FolderBusyError(f"{path} is locked by another process") from None
            raise
        yield path
    finally:
        os.close(fd)  # closing the descriptor releases the lock

