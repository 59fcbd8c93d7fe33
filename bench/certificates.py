"""Certificate throughput of one `lms worker` and its WeasyPrint pool, and render latency.

    python3 bench/certificates.py [--certificates 200] [--processes N]

1. Render latency, warm: one PdfRenderer (the pool the worker uses), the
   certificate page rendered one at a time; p50/p99 of the round trip
   (HTML → pool process → PDF bytes). Reference in the same run: the same
   pool rendering a one-line page (WeasyPrint's own floor here).
2. Throughput: a real `lms worker --queues slow` (pool of N processes, the
   slow queue's concurrency 2N) on an embedded PostgreSQL and Redis, mail to
   a folder, local storage. N pending certificates are queued at once; the
   figure is issued certificates per second (rendered, stored, marked,
   emailed with the PDF attached, notified) and per core of the pool.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psutil
import psycopg2

from bench.harness import Platform, ms, percentiles, platform
from jobs.broker import build_producer
from jobs.queue import BrokerJobQueue
from jobs.tasks import all_specs
from lms.certificates.numbers import new_number
from lms.certificates.render import CertificateContent, PdfRenderer, certificate_html, html_to_pdf
from lms.config import load_config

NAMES = ["Zoë Łukasz-Ñúñez", "محمد عبد الله", "王小明", "Ada Lovelace"]


def seed(plat: Platform, count: int, prefix: str) -> list[str]:
    """``count`` completed enrollments, each with a pending certificate; returns the certificate ids."""
    ids = []
    with psycopg2.connect(plat.database_url) as conn, conn.cursor() as cur:
        cur.execute("SELECT id FROM courses LIMIT 1")
        found = cur.fetchone()
        if found is None:
            cur.execute(
                "INSERT INTO users (id, email, password_hash, full_name, role) "
                "VALUES (gen_random_uuid(), 'teacher@bench.example', 'x', 'Grace Hopper', 'instructor') RETURNING id"
            )
            (teacher,) = cur.fetchone()  # type: ignore[misc]
            cur.execute(
                "INSERT INTO courses (id, title, slug, instructor_id, is_published) "
                "VALUES (gen_random_uuid(), 'Probability and Statistics', 'bench-course', %s, true) RETURNING id",
                (teacher,),
            )
            found = cur.fetchone()
        (course,) = found  # type: ignore[misc]
        for i in range(count):
            cur.execute(
                "INSERT INTO users (id, email, password_hash, full_name) VALUES (gen_random_uuid(), %s, 'x', %s) "
                "RETURNING id",
                (f"{prefix}{i}@bench.example", NAMES[i % len(NAMES)]),
            )
            (student,) = cur.fetchone()  # type: ignore[misc]
            cur.execute(
                "INSERT INTO enrollments (id, student_id, course_id, status, completed_at) "
                "VALUES (gen_random_uuid(), %s, %s, 'completed', now()) RETURNING id",
                (student, course),
            )
            (enrollment,) = cur.fetchone()  # type: ignore[misc]
            cur.execute(
                "INSERT INTO certificates (id, enrollment_id, student_id, course_id, certificate_number, status, "
                "completion_date) VALUES (gen_random_uuid(), %s, %s, %s, %s, 'pending', now()) RETURNING id",
                (enrollment, student, course, new_number()),
            )
            ids.append(str(cur.fetchone()[0]))  # type: ignore[index]
    return ids


def cpu_seconds(pid: int) -> tuple[float, float]:
    """CPU time (user + system) of the worker process and of its pool processes."""
    worker = psutil.Process(pid)
    main = sum(worker.cpu_times()[:2])
    pool = sum(sum(child.cpu_times()[:2]) for child in worker.children(recursive=True))
    return main, pool


def issued(plat: Platform) -> int:
    with psycopg2.connect(plat.database_url) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM certificates WHERE status = 'issued'")
        return int(cur.fetchone()[0])  # type: ignore[index]


def cpu_timed_render(html: str) -> float:
    """Runs in a pool process: the CPU time of one render, unaffected by other processes' load."""
    started = time.process_time()
    html_to_pdf(html)
    return time.process_time() - started


def one_line_page() -> str:
    return "<html><body><p>Hello</p></body></html>"


async def render_latency(samples: int) -> None:
    renderer = PdfRenderer(processes=1)
    await renderer.start()
    loop = asyncio.get_running_loop()
    try:
        for _ in range(5):  # warm
            await renderer.render(content(0))
        certificate: list[float] = []
        reference: list[float] = []
        cpu: list[float] = []
        for i in range(samples):
            started = time.perf_counter()
            await renderer.render(content(i))
            certificate.append(time.perf_counter() - started)
            started = time.perf_counter()
            await loop.run_in_executor(renderer._ensure_pool(), html_to_pdf, one_line_page())
            reference.append(time.perf_counter() - started)
            cpu.append(
                await loop.run_in_executor(renderer._ensure_pool(), cpu_timed_render, certificate_html(content(i)))
            )
    finally:
        await renderer.close()
    rows = (("certificate page", certificate), ("reference: one-line page", reference),
            ("certificate page, CPU time", cpu))  # fmt: skip
    for label, values in rows:
        p = percentiles(values)
        print(f"render, warm, one process  {label:<26} p50 {ms(p['p50'])}  p99 {ms(p['p99'])}  max {ms(p['max'])}")


def content(i: int) -> CertificateContent:
    return CertificateContent(
        "LMS", NAMES[i % len(NAMES)], "Probability and Statistics", "Grace Hopper", datetime.now(UTC), new_number(),
        "https://lms.example.com/verify/LMS-0000-0000-0000-0000",
    )  # fmt: skip


async def throughput(count: int, processes: int) -> None:
    work = Path(tempfile.mkdtemp(prefix="lms-bench-certs-"))
    try:
        with platform() as plat:
            env = plat.env(
                LMS_STORAGE_LOCAL_DIR=str(work / "storage"),
                LMS_SMTP_TRANSPORT="folder",
                LMS_SMTP_OUTBOX_DIR=str(work / "mail"),
                LMS_CERTIFICATES_RENDER_PROCESSES=str(processes),
                LMS_JOBS_SLOW_CONCURRENCY=str(2 * processes),
            )
            warm = seed(plat, 2 * processes, "warm")
            ids = seed(plat, count, "student")
            worker = subprocess.Popen(  # noqa: ASYNC220 (started once, stopped below)
                [sys.executable, "-m", "lms.cli", "worker", "--queues", "slow"],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            urls = {"LMS_DATABASE_URL": plat.database_url, "LMS_REDIS_URL": plat.redis_url}
            config = load_config("test", environ=urls)
            broker = build_producer(config)
            await broker.startup()
            queue = BrokerJobQueue(broker, all_specs())
            try:
                for certificate_id in warm:  # starts and warms the pool
                    await queue.kick("issue_certificate", certificate_id=certificate_id)
                await wait_for(plat, len(warm), 120)
                cpu_before = cpu_seconds(worker.pid)
                started = time.perf_counter()
                for certificate_id in ids:
                    await queue.kick("issue_certificate", certificate_id=certificate_id)
                await wait_for(plat, len(warm) + count, 600)
                elapsed = time.perf_counter() - started
                cpu_after = cpu_seconds(worker.pid)
            finally:
                await broker.shutdown()
                worker.terminate()
                worker.wait(30)
            rate = count / elapsed
            main_cpu = cpu_after[0] - cpu_before[0]
            pool_cpu = cpu_after[1] - cpu_before[1]
            print(
                f"throughput, one worker, pool of {processes}: {count} certificates in {elapsed:.2f} s = "
                f"{rate:.1f}/s wall ({rate / processes:.1f}/s per pool process, on a shared machine)"
            )
            print(
                f"  CPU per certificate: worker process {1000 * main_cpu / count:.1f} ms, pool "
                f"{1000 * pool_cpu / count:.1f} ms -> {count / (main_cpu + pool_cpu):.1f} certificates per "
                f"CPU-second of worker and pool ({count / pool_cpu:.1f} per CPU-second of the pool alone)"
            )
            mails = len(list((work / "mail").glob("*.eml")))
            print(f"  emails written: {mails} (with the PDF attached); PDFs stored: "
                  f"{len(list((work / 'storage' / 'certificates').glob('*.pdf')))}")  # fmt: skip
    finally:
        shutil.rmtree(work, ignore_errors=True)


async def wait_for(plat: Platform, count: int, within: float) -> None:
    deadline = time.monotonic() + within
    while issued(plat) < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {issued(plat)} of {count} certificates issued in {within} s")
        await asyncio.sleep(0.05)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--certificates", type=int, default=200)
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--samples", type=int, default=200)
    args = parser.parse_args()
    print(f"{os.cpu_count()} cores; load {os.getloadavg()[0]:.2f}")
    await render_latency(args.samples)
    await throughput(args.certificates, args.processes)


if __name__ == "__main__":
    asyncio.run(main())
