"""What the rollout router runs beside the two boosters: canary routing by a stable hash of the
request key, and the prediction log.

This file travels inside the router model as the module ``pipeline_live`` (see
``mlpipeline.serve.rollout``), so it imports only the standard library.

Routing: a key goes to the challenger when ``bucket(key, salt) < share``, where ``bucket`` is
the BLAKE2b hash of ``"<salt>:<key>"`` read as a number in [0, 1): the same key always gets the
same model, on every machine and process (never Python's ``hash()``, which is salted per
process), and raising the share keeps every key the challenger already had.

The log: JSON lines appended by one background thread per process to files
``predictions-<UTC start>-<pid>-<n>.jsonl`` under a folder. A request only puts its item on a
queue; the thread turns items into lines (``prepare``, which may score the other model), writes
each batch of lines with whole-line writes, and closes a file past ``rotate_bytes`` after an
fsync. A crash or SIGKILL can lose the batch being written and leave a partial last line in the
file being written; earlier files are whole, and ``read_log`` skips a partial last line.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

LOG_ENV = "PIPELINE_PREDICTION_LOG"  # a folder (overrides the router's), or "off"
FILE_PREFIX, FILE_SUFFIX = "predictions-", ".jsonl"
_SCALE = float(2**64)


# ---- routing -------------------------------------------------------------------------------


def bucket(key: str, salt: str = "") -> float:
    """A number in [0, 1) that depends only on ``salt`` and ``key``."""
    digest = hashlib.blake2b(f"{salt}:{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / _SCALE


def to_challenger(key: str, share: float, salt: str = "") -> bool:
    """Whether the challenger answers the row keyed ``key`` (a share ``share`` of keys)."""
    return share > 0 and bucket(key, salt) < share


# ---- writing -------------------------------------------------------------------------------


def log_folder(configured: str) -> Path | None:
    """Where the log goes: ``$PIPELINE_PREDICTION_LOG`` if set ("off": nowhere), else the
    configured folder ("" : nowhere)."""
    chosen = os.environ.get(LOG_ENV, configured).strip()
    return None if chosen.lower() in {"", "off", "none"} else Path(chosen)


class LogFile:
    """The files of one process: appended with whole-line writes, rotated by size."""

    def __init__(self, folder: Path, rotate_bytes: int) -> None:
        self.folder, self.rotate_bytes = folder, rotate_bytes
        self.count, self._fd, self._size = 0, -1, 0
        self.path: Path | None = None

    def _open(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        self.count += 1
        self.path = (
            self.folder / f"{FILE_PREFIX}{stamp}-{os.getpid()}-{self.count:05d}{FILE_SUFFIX}"
        )
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._size = 0

    def write(self, lines: list[str]) -> None:
        """Append the lines (whole lines per write); a file past ``rotate_bytes`` is closed
        before the line that would cross it (a longer line gets a file of its own)."""
        pending: list[bytes] = []
        size = self._size
        for line in lines:
            data = line.encode() + b"\n"
            if size > 0 and size + len(data) > self.rotate_bytes:
                self._append(b"".join(pending))
                self.close()
                pending, size = [], 0
            pending.append(data)
            size += len(data)
        self._append(b"".join(pending))

    def _append(self, data: bytes) -> None:
        if not data:
            return
        if self._fd < 0:
            self._open()
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]
        self._size += len(data)

    def close(self) -> None:
        """Flush the file to disk and close it: a closed file is whole."""
        if self._fd >= 0:
            os.fsync(self._fd)
            os.close(self._fd)
            self._fd, self._size = -1, 0


_STOP = object()


@dataclass
class PredictionLog:
    """Items in, JSON lines out, in a background thread (started at the first ``append`` in
    each process: a server that forks after loading the model gets its own).

    ``prepare(item)`` turns an item into lines (no newline); it runs in the thread, so work
    that the answer does not need (scoring the other model, serializing) stays off the
    request's path. The queue holds at most ``max_pending`` items: past that a request waits
    (nothing is dropped)."""

    folder: Path
    rotate_bytes: int
    prepare: Callable[[Any], list[str]]
    max_pending: int = 10_000
    written: int = 0  # lines written by this process
    failures: int = 0  # items that could not be prepared or written (logged)
    _pid: int = field(default=-1, repr=False)
    _queue: queue.Queue = field(default_factory=queue.Queue, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)

    def append(self, item: Any) -> None:
        if self._pid != os.getpid():
            self._start()
        self._queue.put(item)

    def _start(self) -> None:
        self._pid = os.getpid()
        self._queue = queue.Queue(self.max_pending)
        self._thread = threading.Thread(
            target=self._run, args=(self._queue,), name="prediction-log", daemon=True
        )
        self._thread.start()
        atexit.register(self.close)

    def _run(self, items: queue.Queue) -> None:
        out = LogFile(self.folder, self.rotate_bytes)
        stop = False
        while not stop:
            batch = [items.get()]
            while len(batch) < 1000:  # what is queued now is one batch: one write
                try:
                    batch.append(items.get_nowait())
                except queue.Empty:
                    break
            stop = any(item is _STOP for item in batch)
            events = [item for item in batch if isinstance(item, threading.Event)]
            kept = [i for i in batch if i is not _STOP and not isinstance(i, threading.Event)]
            self._write(out, kept)
            for event in events:
                event.set()
        out.close()

    def _write(self, out: LogFile, batch: list[Any]) -> None:
        lines: list[str] = []
        for item in batch:
            try:
                lines += self.prepare(item)
            except Exception:  # a bad item must not stop the log
                self.failures += 1
                log.exception("prediction log: an item could not be prepared")
        if not lines:
            return
        try:
            out.write(lines)
            self.written += len(lines)
        except OSError:
            self.failures += len(batch)
            log.exception("prediction log: %d lines could not be written", len(lines))

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until everything appended so far is written; False on time-out."""
        if self._thread is None or self._pid != os.getpid() or not self._thread.is_alive():
            return True
        done = threading.Event()
        self._queue.put(done)
        return done.wait(timeout)

    def close(self, timeout: float = 30.0) -> None:
        """Write what is queued, fsync and close the file, stop the thread."""
        if self._thread is None or self._pid != os.getpid() or not self._thread.is_alive():
            return
        self._queue.put(_STOP)
        self._thread.join(timeout)


# ---- reading -------------------------------------------------------------------------------


@dataclass
class LogRead:
    """What ``read_log`` found: the records, and what it skipped."""

    records: list[dict] = field(default_factory=list)
    files: int = 0
    partial: list[str] = field(default_factory=list)  # files whose last line was cut off
    corrupt: list[str] = field(default_factory=list)  # files with a bad line before the end


def log_files(folder: Path) -> list[Path]:
    return sorted(Path(folder).glob(f"{FILE_PREFIX}*{FILE_SUFFIX}"))


def read_log(folder: Path) -> LogRead:
    """Every record under ``folder``. A last line without its newline (a write cut short by a
    crash) is skipped and its file named in ``partial``; a bad line elsewhere is skipped and
    its file named in ``corrupt`` (that should never happen)."""
    found = LogRead()
    for path in log_files(folder):
        found.files += 1
        for record, ok, last in _lines(path):
            if ok:
                found.records.append(record)
            elif last:
                found.partial.append(path.name)
            elif path.name not in found.corrupt:
                found.corrupt.append(path.name)
    return found


def _lines(path: Path) -> Iterator[tuple[dict, bool, bool]]:
    """(record, parsed, is the last line) for each line of ``path``."""
    data = path.read_bytes()
    lines = data.split(b"\n")
    complete = lines[:-1]  # the text after the last newline is an unfinished line (or "")
    for line in complete:
        if line.strip():
            try:
                yield json.loads(line), True, False
            except ValueError:
                yield {}, False, False
    if lines[-1].strip():
        yield {}, False, True
