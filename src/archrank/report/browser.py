"""A headless Chromium driven over the DevTools protocol, to check and photograph reports.

The browser is the system's ``chromium-headless-shell`` or ``chromium`` (Debian packages; or
``$ARCHRANK_CHROMIUM``), started with ``--remote-debugging-pipe``: DevTools messages are JSON
objects separated by NUL bytes on file descriptors 3 (to the browser) and 4 (from it). No port,
no websocket library, no browser download.

``inspect_page`` loads a page and returns what the report test checks: console errors, every
network request, where each figure is on the page and a full-page screenshot.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from archrank.errors import ArchrankError

CANDIDATES = ("chromium-headless-shell", "chromium", "chromium-browser", "google-chrome")
# Every figure of a report: plots (images) and cell drawings (inline SVG).
FIGURES_JS = """
JSON.stringify([...document.querySelectorAll('figure.plot img, figure.drawing svg')].map(e => {
  const r = e.getBoundingClientRect();
  return {name: e.closest('figure').dataset.name || e.id, tag: e.tagName.toLowerCase(),
          x: r.left + window.scrollX, y: r.top + window.scrollY, width: r.width,
          height: r.height, loaded: e.tagName !== 'IMG' || (e.complete && e.naturalWidth > 0)};
}))
"""


_LAUNCH = """import os, sys
a, b = int(sys.argv[1]), int(sys.argv[2])
os.dup2(a, 3); os.dup2(b, 4); os.close(a); os.close(b)
os.execv(sys.argv[3], sys.argv[3:])
"""


def find_browser() -> str | None:
    """Path of a Chromium to drive, or ``None`` when none is installed."""
    env = os.environ.get("ARCHRANK_CHROMIUM")
    if env:
        return env if Path(env).is_file() else shutil.which(env)
    for name in CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None


class Browser:
    """One headless Chromium process and a DevTools session on one page (a context manager)."""

    def __init__(self, binary: str | None = None, *, width: int = 1200, height: int = 900,
                 timeout: float = 60.0) -> None:
        binary = binary or find_browser()
        if binary is None:
            raise ArchrankError("no Chromium found: install chromium-headless-shell or chromium "
                                "(apt-get install chromium-headless-shell), or set "
                                "ARCHRANK_CHROMIUM")
        self.timeout = timeout
        self.events: list[dict[str, Any]] = []
        self._profile = tempfile.TemporaryDirectory(prefix="archrank-chromium-")
        to_child, self._write = os.pipe()
        self._read, from_child = os.pipe()
        # The browser's ends, moved to fds >= 10, become its fds 3 and 4 in a small Python
        # launcher that then execs the browser (not preexec_fn: forking with a Python callback
        # is unsafe while other threads run).
        ends = [fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (to_child, from_child)]
        os.close(to_child)
        os.close(from_child)
        args = [binary, "--headless", "--remote-debugging-pipe", "--no-sandbox",
                "--disable-gpu", "--no-first-run", "--disable-extensions",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--hide-scrollbars", "--mute-audio",
                f"--user-data-dir={self._profile.name}", f"--window-size={width},{height}"]
        try:
            self.proc = subprocess.Popen([sys.executable, "-c", _LAUNCH, *map(str, ends), *args],
                                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL, pass_fds=ends)
        finally:
            for fd in ends:
                os.close(fd)
        self._next_id = 0
        self._inbox: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._reader = threading.Thread(target=self._pump, daemon=True)
        self._reader.start()
        self.session: str | None = None
        try:
            target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
            self.session = self.call("Target.attachToTarget",
                                     {"targetId": target, "flatten": True})["sessionId"]
            for domain in ("Page", "Runtime", "Log", "Network"):
                self.call(f"{domain}.enable")
            self.call("Emulation.setDeviceMetricsOverride", {
                "width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})
        except BaseException:
            self.close()
            raise

    def _pump(self) -> None:
        buf = b""
        while True:
            try:
                chunk = os.read(self._read, 1 << 16)
            except OSError:
                chunk = b""
            if not chunk:
                self._inbox.put(None)
                return
            buf += chunk
            *messages, buf = buf.split(b"\0")
            for raw in messages:
                self._inbox.put(json.loads(raw))

    def call(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Send one command and wait for its answer (events that arrive meanwhile are kept)."""
        self._next_id += 1
        msg: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if self.session and not method.startswith("Target."):
            msg["sessionId"] = self.session
        os.write(self._write, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        while True:
            reply = self._get(deadline, method)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error'].get('message')}")
                return reply.get("result", {})
            if "method" in reply:
                self.events.append(reply)

    def wait_event(self, method: str) -> dict[str, Any]:
        for ev in self.events:
            if ev["method"] == method:
                return ev
        deadline = time.monotonic() + self.timeout
        while True:
            ev = self._get(deadline, method)
            if "method" in ev:
                self.events.append(ev)
                if ev["method"] == method:
                    return ev

    def _get(self, deadline: float, what: str) -> dict[str, Any]:
        try:
            msg = self._inbox.get(timeout=max(0.01, deadline - time.monotonic()))
        except queue.Empty:
            raise TimeoutError(f"Chromium did not answer {what} in {self.timeout:.0f} s"
                               ) from None
        if msg is None:
            raise RuntimeError(f"Chromium exited while waiting for {what}")
        return msg

    def evaluate(self, expression: str, await_promise: bool = False) -> Any:
        out = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                             "awaitPromise": await_promise})
        if "exceptionDetails" in out:
            raise RuntimeError(f"page script failed: {out['exceptionDetails'].get('text')}")
        return out["result"].get("value")

    def load(self, url: str) -> None:
        """Open ``url`` and wait until it and its images are loaded and decoded."""
        self.events = [e for e in self.events if e["method"] != "Page.loadEventFired"]
        self.call("Page.navigate", {"url": url})
        self.wait_event("Page.loadEventFired")
        self.evaluate("Promise.all([...document.images].map(i => i.decode().catch(() => 0)))",
                      await_promise=True)

    def screenshot(self, full_page: bool = True, clip_height: int | None = None) -> bytes:
        """PNG of the page: all of it, or its top ``clip_height`` CSS pixels."""
        params: dict[str, Any] = {"format": "png"}
        metrics = self.call("Page.getLayoutMetrics")["cssContentSize"]
        width = int(metrics["width"])
        height = int(metrics["height"]) if full_page else int(clip_height or 900)
        if clip_height:
            height = min(height, clip_height)
        params["clip"] = {"x": 0, "y": 0, "width": width, "height": height, "scale": 1}
        params["captureBeyondViewport"] = True
        return base64.b64decode(self.call("Page.captureScreenshot", params)["data"])

    def close(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(RuntimeError, TimeoutError, OSError):
                self.call("Browser.close")
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for fd in (self._write, self._read):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._profile.cleanup()

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class PageCheck:
    """What loading a report showed."""

    console_errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    figures: list[dict[str, Any]] = field(default_factory=list)
    png: bytes = b""


def _errors(events: list[dict[str, Any]]) -> list[str]:
    out = []
    for ev in events:
        p = ev.get("params", {})
        if ev["method"] == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            out.append(" ".join(str(a.get("value", a.get("description", "")))
                                for a in p.get("args", [])))
        elif ev["method"] == "Runtime.exceptionThrown":
            out.append(p.get("exceptionDetails", {}).get("text", "exception"))
        elif ev["method"] == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
            out.append(p["entry"].get("text", ""))
    return out


def inspect_page(path: str | Path, *, width: int = 1200, binary: str | None = None
                 ) -> PageCheck:
    """Load a local HTML file and report console errors, requests, figures and a screenshot."""
    url = Path(path).resolve().as_uri()
    with Browser(binary, width=width) as browser:
        browser.load(url)
        figs = json.loads(browser.evaluate(FIGURES_JS))
        png = browser.screenshot()
        time.sleep(0.2)  # late console messages
        browser.evaluate("1")
        events = browser.events
    requests = [e["params"]["request"]["url"] for e in events
                if e["method"] == "Network.requestWillBeSent"]
    return PageCheck(_errors(events), requests, figs, png)


def screenshot(path: str | Path, out: str | Path, *, width: int = 1100, height: int = 1400,
               binary: str | None = None) -> Path:
    """The top ``width`` x ``height`` CSS pixels of a local HTML file as a PNG file."""
    with Browser(binary, width=width, height=height) as browser:
        browser.load(Path(path).resolve().as_uri())
        png = browser.screenshot(full_page=False, clip_height=height)
    out = Path(out)
    out.write_bytes(png)
    return out


def main(argv: list[str] | None = None) -> int:
    """``python -m archrank.report.browser REPORT.html OUT.png [WIDTH HEIGHT]``: a screenshot of
    the top of a report (how docs/report.png is made, see benchmarks/make_report_screenshot.sh).
    """
    args = sys.argv[1:] if argv is None else argv
    if len(args) not in (2, 4):
        print("usage: python -m archrank.report.browser REPORT.html OUT.png [WIDTH HEIGHT]",
              file=sys.stderr)
        return 2
    size = (int(args[2]), int(args[3])) if len(args) == 4 else (1100, 1400)
    try:
        out = screenshot(args[0], args[1], width=size[0], height=size[1])
    except ArchrankError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {out} ({out.stat().st_size / 1024:.0f} KiB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
