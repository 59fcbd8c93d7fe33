"""Node processes of the tests: the official JavaScript clients (tests/js/) and headless Chromium.

Every script finds its npm packages (``lms/assets/node_modules``, which
``./scripts/test`` installs with ``npm ci``) through ``NODE_PATH``. A missing
``node`` or package is a broken setup, not a reason to skip: :func:`node_script`
fails at once, saying what to run, instead of a test waiting for a client that
died at its first ``require``. Chromium is a system package (``apt-get install
chromium``); tests that drive it are skipped where it is absent.

:class:`NodeScript` keeps everything the process writes, stdout line by line
and stderr, so that a failing test shows the script's own error.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NODE_MODULES = ROOT / "lms" / "assets" / "node_modules"
SCRIPTS = ROOT / "tests" / "js"
CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"

needs_chromium = pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason="needs Debian's chromium (apt-get install chromium)"
)


def node_script(script: str, *args: str, packages: tuple[str, ...] = ("socket.io-client",)) -> list[str]:
    """The argv of ``node tests/js/<script> args...``; fails the test at once if node or a package is missing."""
    if shutil.which("node") is None:
        pytest.fail("node is not on PATH (Node 20 runs the JavaScript clients of these tests)")
    missing = [name for name in packages if not (NODE_MODULES / name).is_dir()]
    if missing:
        pytest.fail(f"{', '.join(missing)} missing from {NODE_MODULES}: run `npm ci` there (./scripts/test does)")
    return ["node", str(SCRIPTS / script), *args]


def node_env() -> dict[str, str]:
    return {**os.environ, "NODE_PATH": str(NODE_MODULES), "CHROMIUM": CHROMIUM}


class NodeScript:
    """A Node script run as an asyncio subprocess; its output is drained as it comes, never lost."""

    def __init__(self, process: asyncio.subprocess.Process, name: str) -> None:
        self.process = process
        self.name = name
        self.lines: list[str] = []
        self.stderr = bytearray()
        assert process.stdout is not None and process.stderr is not None
        self._drains = [
            asyncio.ensure_future(self._stdout(process.stdout)),
            asyncio.ensure_future(self._stderr(process.stderr)),
        ]

    @classmethod
    async def start(cls, script: str, *args: str, packages: tuple[str, ...] = ("socket.io-client",)) -> NodeScript:
        argv = node_script(script, *args, packages=packages)
        process = await asyncio.create_subprocess_exec(
            *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=node_env()
        )
        return cls(process, " ".join([script, *args]))

    async def _stdout(self, stream: asyncio.StreamReader) -> None:
        async for line in stream:
            self.lines.append(line.decode())

    async def _stderr(self, stream: asyncio.StreamReader) -> None:
        while chunk := await stream.read(65536):
            self.stderr += chunk

    def report(self) -> str:
        """What to show when a test fails: how it ended, its last lines and its stderr (the end of it)."""
        code = self.process.returncode
        state = "still running" if code is None else f"exited with {code}"
        last = "".join(self.lines[-20:])
        return f"node {self.name}: {state}; last output:\n{last}stderr:\n{self.stderr.decode(errors='replace')[-4000:]}"

    async def finish(self, timeout: float) -> int:
        """Its exit code, once it exited and all it wrote was read."""
        code = await asyncio.wait_for(self.process.wait(), timeout)
        await asyncio.gather(*self._drains)
        return code

    async def close(self) -> None:
        if self.process.returncode is None:
            self.process.kill()
            await self.process.wait()
        await asyncio.gather(*self._drains, return_exceptions=True)
