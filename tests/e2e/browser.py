"""Headless Debian chromium driven over its DevTools protocol (aiohttp's WebSocket client, already
pinned): open a page, type with the keyboard, run JavaScript, take screenshots, and check a page
with axe-core (vendored in tests/e2e/vendor/axe-core, see its README)."""
from __future__ import annotations

import asyncio
import base64
import itertools
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import aiohttp
import pytest
import requests

from tests.processes import free_port

AXE = Path(__file__).resolve().parent / "vendor" / "axe-core" / "axe.min.js"
# What a page may not have: axe's two worst impact levels.
BLOCKING_IMPACTS = ("serious", "critical")
KEYS = {"Tab": 9, "Enter": 13}


def chromium_or_skip() -> str:
    found = shutil.which("chromium")
    if found:
        return found
    if os.environ.get("CI"):
        pytest.fail("chromium is missing: CI must install Debian's chromium (apt-get install chromium)")
    pytest.skip("install Debian's chromium to run the browser checks")


class Browser:
    """One chromium process and one tab. Every call waits for its answer (synchronous API)."""

    def __init__(self, chromium: str, profile: Path, width: int = 1280, height: int = 900,
                 accept_language: str = "en-US,en"):
        self.port = free_port()
        self.process = subprocess.Popen(
            [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
             "--disable-quic", "--hide-scrollbars", f"--user-data-dir={profile}",
             f"--remote-debugging-port={self.port}", "--remote-allow-origins=*", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.loop = asyncio.new_event_loop()
        self.ids = itertools.count(1)
        self.session = None
        self.socket = None
        self.width, self.height = width, height
        try:
            self.loop.run_until_complete(self._connect())
            self.call("Page.enable")
            self.call("Runtime.enable")
            user_agent = self.call("Browser.getVersion")["userAgent"]
            self.call("Emulation.setUserAgentOverride", userAgent=user_agent, acceptLanguage=accept_language)
            self.call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1,
                      mobile=False)
        except BaseException:
            self.close()
            raise

    async def _connect(self):
        deadline = time.monotonic() + 30
        while True:
            try:
                targets = requests.get(f"http://127.0.0.1:{self.port}/json/list", timeout=2).json()
                page = next(target for target in targets if target["type"] == "page")
                break
            except (requests.RequestException, StopIteration, ValueError):
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise RuntimeError("chromium did not open its DevTools port") from None
                await asyncio.sleep(0.2)
        self.session = aiohttp.ClientSession()
        self.socket = await self.session.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0)

    async def _call(self, method: str, params: dict, timeout: float):
        message_id = next(self.ids)
        await self.socket.send_str(json.dumps({"id": message_id, "method": method, "params": params}))
        async with asyncio.timeout(timeout):
            while True:
                message = await self.socket.receive()
                if message.type != aiohttp.WSMsgType.TEXT:
                    raise RuntimeError(f"DevTools connection ended: {message}")
                answer = json.loads(message.data)
                if answer.get("id") == message_id:
                    if "error" in answer:
                        raise RuntimeError(f"{method}: {answer['error']}")
                    return answer.get("result", {})

    def call(self, method: str, timeout: float = 60, **params) -> dict:
        return self.loop.run_until_complete(self._call(method, params, timeout))

    def evaluate(self, expression: str, timeout: float = 60):
        """The value of a JavaScript expression in the page (a promise is awaited)."""
        result = self.call("Runtime.evaluate", timeout=timeout, expression=expression, awaitPromise=True,
                           returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression[:80]}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def open(self, url: str) -> None:
        self.call("Page.navigate", url=url)
        self.wait_for("document.readyState === 'complete' && location.href !== 'about:blank'", 30)

    def wait_for(self, expression: str, timeout: float = 30, what: str | None = None):
        deadline = time.monotonic() + timeout
        while True:
            value = self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                seen = self.evaluate("location.href + ': ' + (document.body ? document.body.innerText.slice(0, 1500) : '')")
                raise AssertionError(f"timed out waiting for {what or expression}; the page shows: {seen}")
            time.sleep(0.2)

    def type(self, text: str) -> None:
        self.call("Input.insertText", text=text)

    def press(self, key: str) -> None:
        code = KEYS[key]
        extra = {"text": "\r"} if key == "Enter" else {}
        self.call("Input.dispatchKeyEvent", type="keyDown", key=key, code=key, windowsVirtualKeyCode=code, **extra)
        self.call("Input.dispatchKeyEvent", type="keyUp", key=key, code=key, windowsVirtualKeyCode=code)

    def focused(self) -> str:
        return self.evaluate("document.activeElement && (document.activeElement.id || document.activeElement.tagName)")

    def screenshot(self, path: Path, full_page: bool = True) -> bytes:
        params = {"format": "png", "captureBeyondViewport": full_page}
        if full_page:
            size = self.call("Page.getLayoutMetrics")["cssContentSize"]
            params["clip"] = {"x": 0, "y": 0, "width": max(self.width, size["width"]),
                              "height": min(max(self.height, size["height"]), 6000), "scale": 1}
        data = base64.b64decode(self.call("Page.captureScreenshot", **params)["data"])
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return data

    def axe_violations(self) -> list[dict]:
        """axe-core's WCAG 2 A/AA and best-practice rules on the page; the serious and critical ones."""
        if not self.evaluate("typeof axe !== 'undefined'"):
            self.evaluate(AXE.read_text())
        found = json.loads(self.evaluate(
            "axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', "
            "'best-practice']}}).then(r => JSON.stringify(r.violations.map(v => ({id: v.id, impact: v.impact, "
            "help: v.help, nodes: v.nodes.map(n => n.target.join(' ')).slice(0, 5)}))))", timeout=120))
        return [violation for violation in found if violation["impact"] in BLOCKING_IMPACTS]

    def close(self) -> None:
        async def shut():
            if self.socket is not None:
                await self.socket.close()
            if self.session is not None:
                await self.session.close()
        try:
            self.loop.run_until_complete(shut())
        finally:
            self.loop.close()
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
