"""Upload and download throughput of a 100 MB file, and the server's memory while it streams.

    python3 bench/files.py [--mb 100]

Against a real `lms serve` process with local storage and one with S3
storage (moto's server in its own process), both on an embedded
PostgreSQL and Redis. The server's resident memory is sampled every 5 ms
during each transfer: the figure is its peak above the idle level before
the transfer (target: under 50 MB). The reference, measured in the same
run, is a bare aiohttp server that streams the same body to a file
(upload) and serves it with FileResponse (download).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp
import bcrypt
import psutil

from bench.harness import Platform, platform
from lms.devservers import free_port

MB = 1024 * 1024
EMAIL = "bench-files@example.com"
PASSWORD = "bench files password 1"


class PeakMemory:
    """Samples a process's RSS in a thread; ``peak_above_idle`` after ``stop``."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.idle = self.process.memory_info().rss
        self.peak = self.idle
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(0.005)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def peak_above_idle_mb(self) -> float:
        return (self.peak - self.idle) / MB


def make_sample(path: Path, size: int) -> None:
    header = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2" + (size - 32 + 8).to_bytes(4, "big") + b"mdat"
    block = os.urandom(MB)
    with path.open("wb") as out:
        out.write(header)
        written = len(header)
        while written < size:
            piece = block[: min(MB, size - written)]
            out.write(piece)
            written += len(piece)


async def upload(session: aiohttp.ClientSession, url: str, headers: dict[str, str], path: Path) -> tuple[float, dict]:
    form = aiohttp.FormData()
    with path.open("rb") as handle:
        form.add_field("file", handle, filename="lecture.mp4", content_type="video/mp4")
        started = time.perf_counter()
        async with session.post(url, data=form, headers=headers) as response:
            body = await response.json()
            assert response.status in (200, 201), body
    return time.perf_counter() - started, body


async def download(session: aiohttp.ClientSession, url: str, headers: dict[str, str]) -> tuple[float, int]:
    started = time.perf_counter()
    size = 0
    async with session.get(url, headers=headers) as response:
        assert response.status == 200, await response.text()
        async for chunk in response.content.iter_chunked(256 * 1024):
            size += len(chunk)
    return time.perf_counter() - started, size


def seed_user(plat: Platform) -> None:
    import psycopg2

    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()
    with psycopg2.connect(plat.database_url) as conn, conn.cursor() as cur:
        cur.execute(
            "INSERT INTO users (id, email, password_hash, full_name, role) VALUES (gen_random_uuid(), %s, %s, %s, %s)",
            (EMAIL, hashed, "Bench Uploader", "instructor"),
        )


def start_moto() -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            urllib.request.urlopen(f"{url}/moto-api/", timeout=1).close()  # noqa: S310
            return process, url
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("moto did not start")


REFERENCE_SERVER = r"""
import sys
from pathlib import Path
from aiohttp import web
target = Path(sys.argv[1])
async def up(request):
    reader = await request.multipart()
    part = await reader.next()
    with target.open("wb") as out:
        while chunk := await part.read_chunk(256 * 1024):
            out.write(chunk)
    return web.json_response({"size": target.stat().st_size}, status=201)
async def down(request):
    return web.FileResponse(target)
app = web.Application(client_max_size=1024 ** 4)
app.router.add_post("/upload", up)
app.router.add_get("/download", down)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[2]), print=None)
"""


def start_reference(target: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    process = subprocess.Popen([sys.executable, "-c", REFERENCE_SERVER, str(target), str(port)])
    for _ in range(300):
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return process, f"http://127.0.0.1:{port}"
        time.sleep(0.05)
    raise RuntimeError("reference server did not start")


def pid_of(plat: Platform, index: int) -> int:
    return plat.servers[index].pid


async def measure(label: str, url: str, pid: int, headers: dict[str, str], sample: Path, size_mb: float,
                  upload_path: str, download_path: str | None) -> None:  # fmt: skip
    expected = int(size_mb * MB)
    timeout = aiohttp.ClientTimeout(total=600)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        await asyncio.sleep(0.5)
        with PeakMemory(pid) as up_memory:
            seconds, body = await upload(session, url + upload_path, headers, sample)
        print(f"{label:<22} upload   {size_mb / seconds:7.1f} MB/s  ({seconds:5.2f} s)  "
              f"server peak +{up_memory.peak_above_idle_mb:5.1f} MB above idle")  # fmt: skip
        path = download_path or f"/api/v1/files/{body['id']}/download"
        with PeakMemory(pid) as down_memory:
            seconds, size = await download(session, url + path, headers)
        assert size == expected, (size, expected)
        print(f"{label:<22} download {size_mb / seconds:7.1f} MB/s  ({seconds:5.2f} s)  "
              f"server peak +{down_memory.peak_above_idle_mb:5.1f} MB above idle")  # fmt: skip


async def login(url: str) -> dict[str, str]:
    credentials = {"email": EMAIL, "password": PASSWORD}
    async with aiohttp.ClientSession() as session, session.post(url + "/api/v1/auth/login", json=credentials) as r:
        token = (await r.json())["access_token"]
    return {"Authorization": f"Bearer {token}"}


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mb", type=int, default=100)
    args = parser.parse_args()
    size = args.mb * MB
    work = Path(tempfile.mkdtemp(prefix="lms-bench-files-"))
    sample = work / "lecture.mp4"
    make_sample(sample, size)
    print(f"{args.mb} MB file; {os.cpu_count()} cores; load {os.getloadavg()[0]:.2f}")
    moto, moto_url = start_moto()
    reference, reference_url = start_reference(work / "reference.bin")
    try:
        with platform() as plat:
            seed_user(plat)
            common = {"LMS_UPLOADS_MAX_UPLOAD_MB": str(args.mb + 10), "LMS_RATE_LIMIT_ENABLED": "false"}
            local = plat.serve(**common, LMS_STORAGE_LOCAL_DIR=str(work / "local"))
            s3_settings = {
                "LMS_STORAGE_PROVIDER": "s3",
                "LMS_STORAGE_S3_ENDPOINT_URL": moto_url,
                "LMS_STORAGE_S3_BUCKET": "bench",
                "LMS_STORAGE_S3_ACCESS_KEY_ID": "bench",
                "LMS_STORAGE_S3_SECRET_ACCESS_KEY": "bench",
            }
            s3 = plat.serve(**common, **s3_settings)
            headers = await login(local)
            await measure("reference (bare aiohttp)", reference_url, reference.pid, {}, sample, args.mb,
                          "/upload", "/download")  # fmt: skip
            await measure("lms, local storage", local, pid_of(plat, 0), headers, sample, args.mb,
                          "/api/v1/files/upload", None)  # fmt: skip
            # S3: the download is a 302 to moto; the client follows it, so that figure is moto's.
            await measure("lms, S3 (moto)", s3, pid_of(plat, 1), headers, sample, args.mb,
                          "/api/v1/files/upload", None)  # fmt: skip
    finally:
        for process in (moto, reference):
            process.terminate()
            process.wait(10)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
