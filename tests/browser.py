"""Headless Chromium, driven one step at a time from a test (tests/js/browser.js).

page = ChromiumPage()
await page.goto(url)
await page.fill("#email", "a@example.com")
await page.click("button[type=submit]")
text = await page.visible("#done")
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from typing import Any

from tests.node import node_env, node_script


class ChromiumPage:
    def __init__(self) -> None:
        self.process = subprocess.Popen(
            node_script("browser.js", packages=("playwright-core",)),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=node_env(),
        )  # fmt: skip
        self.started = False

    async def _read(self, timeout: float = 60) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(self.process.stdout.readline), timeout)
        if not line:
            stderr = self.process.stderr.read() if self.process.stderr else ""
            raise AssertionError("the browser script ended: " + stderr)
        message: dict[str, Any] = json.loads(line)
        assert "failed" not in message, message["failed"]
        return message

    async def send(self, **command: Any) -> dict[str, Any]:
        if not self.started:
            await self._read()  # {"ready": true}
            self.started = True
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()
        return await self._read()

    async def goto(self, url: str) -> str:
        return str((await self.send(goto=url))["url"])

    async def fill(self, selector: str, value: str) -> None:
        await self.send(fill=selector, value=value)

    async def click(self, selector: str) -> None:
        await self.send(click=selector)

    async def visible(self, selector: str) -> str:
        """The element's text, once it is shown (15 s at most)."""
        return str((await self.send(visible=selector))["text"])

    async def text(self, selector: str) -> str:
        return str((await self.send(text=selector))["text"])

    async def url(self) -> str:
        return str((await self.send(url=True))["url"])

    async def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (JSON-serializable)."""
        return (await self.send(evaluate=expression))["value"]

    async def wait_for(self, expression: str) -> Any:
        """Waits (15 s at most) until the expression is truthy; its value."""
        return (await self.send(wait_for=expression))["value"]

    async def screenshot(self, path: str) -> str:
        return str((await self.send(screenshot=path))["path"])

    async def close(self) -> list[str]:
        """The page errors seen (script errors, console errors, 5xx answers)."""
        errors: list[str] = (await self.send(close=True))["errors"]
        self.kill()
        return errors

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        for stream in (self.process.stdin, self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()
