"""A real browser for tests: headless Chromium (Debian's ``chromium``) driven over the Chrome
DevTools Protocol through a pipe (``--remote-debugging-pipe``: JSON messages ending in NUL on
file descriptors 3 and 4), so no driver or websocket library is needed.

``Browser().visit(url, ready)`` opens a page with the network cut off (every host name but
this machine's fails to resolve: a page that needs a CDN shows it), waits until the JavaScript
expression ``ready`` is true, and returns what a person would notice: console errors (uncaught
exceptions and failed loads among them) and warnings, the page's text, and a screenshot.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--remote-debugging-pipe",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost",  # offline
    "--window-size=1280,1600",
]


def chromium() -> str | None:
    """The Chromium binary, if installed (``.ci/run`` installs Debian's where apt can)."""
    return next((found for name in CHROMIUM_NAMES if (found := shutil.which(name))), None)


@dataclass
class Page:
    """What a visit found."""

    url: str
    ready: Any = None
    text: str = ""
    errors: list[str] = field(default_factory=list)  # console errors, exceptions, failed loads
    warnings: list[str] = field(default_factory=list)
    screenshot: Path | None = None


class Browser:
    """One headless Chromium process; a context manager."""

    def __init__(self, binary: str | None = None) -> None:
        self.binary = binary or chromium()
        if self.binary is None:
            raise FileNotFoundError("chromium is not installed (apt-get install chromium)")
        self._profile = tempfile.mkdtemp(prefix="chromium-profile-")
        commands_read, self._commands = os.pipe()
        self._replies, replies_write = os.pipe()
        # above 9 first, so that placing them at 3 and 4 in the child cannot overwrite one
        commands_read, replies_write = (_above(fd, 10) for fd in (commands_read, replies_write))
        self._process = subprocess.Popen(
            [self.binary, *FLAGS, f"--user-data-dir={self._profile}", "about:blank"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            pass_fds=(3, 4),
            preexec_fn=lambda: (os.dup2(commands_read, 3), os.dup2(replies_write, 4)),
        )
        os.close(commands_read)
        os.close(replies_write)
        self._buffer = b""
        self._next_id = 0
        self._events: list[dict] = []

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with contextlib.suppress(OSError, RuntimeError, TimeoutError):
            self.send("Browser.close")
        try:
            self._process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        for fd in (self._commands, self._replies):
            os.close(fd)
        shutil.rmtree(self._profile, ignore_errors=True)

    # ---- the protocol ----------------------------------------------------------------------

    def send(
        self, method: str, params: dict | None = None, session: str | None = None, timeout=120.0
    ) -> dict:
        """Send one command and return its result (events meanwhile are kept). A page that
        keeps the renderer busy (MLflow's UI on a loaded CI machine) can delay an answer by tens
        of seconds: the timeout is for a browser that is gone, not a slow one."""
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._commands, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            reply = self._read(deadline - time.monotonic())
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self._events.append(reply)
        raise TimeoutError(f"{method}: no reply within {timeout}s")

    def _read(self, timeout: float) -> dict:
        import select

        while b"\0" not in self._buffer:
            ready, _, _ = select.select([self._replies], [], [], max(timeout, 0.01))
            if not ready:
                raise TimeoutError("chromium did not answer")
            chunk = os.read(self._replies, 1 << 20)
            if not chunk:
                raise RuntimeError("chromium exited")
            self._buffer += chunk
        message, _, self._buffer = self._buffer.partition(b"\0")
        return json.loads(message)

    # ---- a visit ---------------------------------------------------------------------------

    def visit(
        self, url: str, ready: str = "true", screenshot: Path | None = None, timeout=60.0
    ) -> Page:
        """Open ``url`` in a new tab, wait for the load and for ``ready`` (a JavaScript
        expression) to be truthy, and report."""
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})[
            "sessionId"
        ]
        for domain in ("Page", "Runtime", "Log"):
            self.send(f"{domain}.enable", session=session)
        self._events.clear()
        self.send("Page.navigate", {"url": url}, session=session)
        page = Page(url)
        page.ready = self._wait_until(session, ready, timeout)
        page.text = self.evaluate(session, "document.body ? document.body.innerText : ''")
        if screenshot is not None:
            shot = self.send("Page.captureScreenshot", {"format": "png"}, session=session)
            screenshot.write_bytes(base64.b64decode(shot["data"]))
            page.screenshot = screenshot
        for level, text in filter(None, (problem(e, session) for e in self._events)):
            (page.errors if level == "error" else page.warnings).append(text)
        self.send("Target.closeTarget", {"targetId": target})
        return page

    def evaluate(self, session: str, expression: str) -> Any:
        result = self.send(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
            session=session,
        )
        return result.get("result", {}).get("value")

    def _wait_until(self, session: str, ready: str, timeout: float) -> Any:
        deadline = time.monotonic() + timeout
        loaded = f"document.readyState === 'complete' && ({ready})"
        while time.monotonic() < deadline:
            value = self.evaluate(session, loaded)
            if value:
                time.sleep(0.5)  # late console messages
                return value
            time.sleep(0.2)
        return None


def _above(fd: int, lowest: int) -> int:
    """``fd`` moved to a descriptor number of at least ``lowest``."""
    import fcntl

    moved = fcntl.fcntl(fd, fcntl.F_DUPFD, lowest)
    os.close(fd)
    return moved


CONSOLE_LEVELS = {"error": "error", "assert": "error", "warning": "warning"}


def problem(event: dict, session: str) -> tuple[str, str] | None:
    """(level, text) of a console error or warning, an uncaught exception or a failed load."""
    if event.get("sessionId") != session:
        return None
    method, params = event.get("method"), event.get("params", {})
    if method == "Runtime.consoleAPICalled" and params.get("type") in CONSOLE_LEVELS:
        args = " ".join(str(a.get("value", a.get("description", ""))) for a in params["args"])
        return CONSOLE_LEVELS[params["type"]], f"console.{params['type']}: {args}"
    if method == "Runtime.exceptionThrown":
        details = params.get("exceptionDetails", {})
        return "error", f"exception: {details.get('exception', {}).get('description') or details}"
    if method == "Log.entryAdded" and params["entry"].get("level") in ("error", "warning"):
        entry = params["entry"]
        text = f"{entry.get('source')}: {entry.get('text')} {entry.get('url', '')}".strip()
        return entry["level"], text
    return None
