"""py-spy on a running `lms serve` while a scenario runs; prints where the samples fell.

Used by the benchmarks' ``--profile`` option. py-spy installs from PyPI
(``pip install py-spy``); it needs ptrace rights over the server process
(same user, ``kernel.yama.ptrace_scope`` 0 or 1 with the server a child).
"""

from __future__ import annotations

import collections
import contextlib
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def recording(pid: int, output: Path, rate: int = 200) -> Iterator[None]:
    """Collapsed stacks (``--format raw``) of ``pid`` into ``output`` for the duration of the block."""
    spy = shutil.which("py-spy")
    if spy is None:
        raise SystemExit("--profile needs py-spy: pip install py-spy")
    process = subprocess.Popen(
        [spy, "record", "--pid", str(pid), "--format", "raw", "--output", str(output), "--rate", str(rate),
         "--nonblocking"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        yield
    finally:
        process.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
        _, err = process.communicate(timeout=30)
        if not output.exists():
            raise RuntimeError(f"py-spy wrote nothing: {err.decode(errors='replace').strip()}")


def summary(collapsed: Path, top: int = 25) -> str:
    """The functions with the most samples: ``self`` (on top of the stack) and ``total`` (anywhere in it)."""
    own: collections.Counter[str] = collections.Counter()
    total: collections.Counter[str] = collections.Counter()
    samples = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        samples += n
        frames = [_short(frame) for frame in stack.split(";")]
        own[frames[-1]] += n
        for frame in set(frames):
            total[frame] += n
    if not samples:
        return "no samples"
    lines = [f"{samples} samples; self (top of stack):"]
    lines += [f"  {100 * n / samples:5.1f} %  {frame}" for frame, n in own.most_common(top)]
    lines.append("total (anywhere in the stack):")
    lines += [f"  {100 * n / samples:5.1f} %  {frame}" for frame, n in total.most_common(top)]
    return "\n".join(lines)


def _short(frame: str) -> str:
    # "handle (aiohttp/web_protocol.py:452)" -> "handle (aiohttp/web_protocol.py)": one entry per function.
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    for marker in ("site-packages/", "/lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"{name} ({Path(path).as_posix().split('/work/main/')[-1]})"
