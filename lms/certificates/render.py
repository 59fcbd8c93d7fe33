"""The certificate PDF: a jinja2 template rendered by WeasyPrint in a pool of processes.

WeasyPrint is synchronous and CPU-bound (tens of milliseconds a page), so it
never runs on an event loop: :class:`PdfRenderer` hands the HTML to worker
processes and awaits the bytes. Each pool process imports WeasyPrint once
(about half a second), keeps one font configuration for all its renders
and renders a page at start-up, so the first real certificate is warm.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import unicodedata
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import jinja2
import segno

log = logging.getLogger(__name__)

TEMPLATE_DIR = Path(__file__).resolve().parent / "templates"


@dataclass(frozen=True)
class CertificateContent:
    app_name: str
    student_name: str
    course_title: str
    instructor_name: str
    completion_date: datetime
    number: str
    verify_url: str


def direction(text: str) -> str:
    """``rtl`` when the first letter with a strong direction is right-to-left (Arabic, Hebrew)."""
    for char in text:
        kind = unicodedata.bidirectional(char)
        if kind in ("R", "AL"):
            return "rtl"
        if kind == "L":
            return "ltr"
    return "ltr"


_env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(TEMPLATE_DIR), autoescape=True, undefined=jinja2.StrictUndefined
)


def certificate_html(content: CertificateContent) -> str:
    # A fixed mask: choosing the best of eight costs milliseconds and any mask scans.
    qr = segno.make(content.verify_url, error="m", mask=0, micro=False)
    return _env.get_template("certificate.html").render(
        app_name=content.app_name,
        student_name=content.student_name,
        course_title=content.course_title,
        instructor_name=content.instructor_name,
        completion_date=f"{content.completion_date:%-d %B %Y}",
        number=content.number,
        verify_url=content.verify_url,
        # One pixel per module, drawn unsmoothed: crisp at any size, and much
        # cheaper for WeasyPrint than an SVG path of every module.
        qr_png=qr.png_data_uri(scale=1, border=0, dark="#111827"),
        name_direction=direction(content.student_name),
        course_direction=direction(content.course_title),
        instructor_direction=direction(content.instructor_name),
    )


# --- inside the pool processes ------------------------------------------------

_fonts: Any = None
_stylesheets: list[Any] = []


def _start_process() -> None:
    global _fonts
    from weasyprint import CSS
    from weasyprint.text.fonts import FontConfiguration

    _fonts = FontConfiguration()
    # Parsed once: parsing the page's CSS on every render cost about a third of it.
    _stylesheets[:] = [CSS(filename=str(TEMPLATE_DIR / "certificate.css"), font_config=_fonts)]
    sample = CertificateContent("LMS", "Zoë Ñúñez 王 محمد", "Warm-up", "Ada", datetime(2026, 1, 1), "LMS-0", "http://x")
    html_to_pdf(certificate_html(sample))


def html_to_pdf(html: str) -> bytes:
    from weasyprint import HTML

    pdf: bytes = HTML(string=html, base_url=str(TEMPLATE_DIR)).write_pdf(stylesheets=_stylesheets, font_config=_fonts)
    return pdf


# --- the worker's side ----------------------------------------------------------


class PdfRenderer:
    """A process pool for WeasyPrint, started on first use and shared by a worker's tasks."""

    def __init__(self, processes: int = 1, timeout_seconds: float = 60.0) -> None:
        self.processes = processes
        self.timeout_seconds = timeout_seconds
        self._pool: ProcessPoolExecutor | None = None

    def _ensure_pool(self) -> ProcessPoolExecutor:
        if self._pool is None:
            # spawn: a fork of a process running an event loop, threads and
            # open sockets is not safe; a fresh interpreter is.
            self._pool = ProcessPoolExecutor(
                max_workers=self.processes, mp_context=multiprocessing.get_context("spawn"), initializer=_start_process
            )
        return self._pool

    async def start(self) -> None:
        """Start and warm every pool process now (benchmarks, and workers that want no cold start)."""
        pool = self._ensure_pool()
        loop = asyncio.get_running_loop()
        await asyncio.gather(*(loop.run_in_executor(pool, _noop) for _ in range(self.processes)))

    async def render(self, content: CertificateContent) -> bytes:
        html = certificate_html(content)
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(self.timeout_seconds):
            try:
                return await loop.run_in_executor(self._ensure_pool(), html_to_pdf, html)
            except BrokenProcessPool:
                # A pool process died (killed, out of memory): the pool is
                # unusable from then on. Start a fresh one and try once more.
                log.warning("the PDF process pool broke; starting a new one")
                self._discard_pool()
                return await loop.run_in_executor(self._ensure_pool(), html_to_pdf, html)

    def _discard_pool(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            pool.shutdown(wait=False, cancel_futures=True)

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await asyncio.to_thread(pool.shutdown, wait=True, cancel_futures=True)


def _noop() -> None:
    return None
