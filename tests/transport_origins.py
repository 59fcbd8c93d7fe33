"""Where each unclosed selector transport was made: the leak the warning filters in pyproject.toml ignore.

Now and then a transport to the test S3 server (moto), already told to close
but never closed, is garbage-collected during a later test's setup. Python's
warning names neither the test nor the code that made the transport.
This plugin remembers both for every transport the suite makes (about
50 µs each). The end of the run lists the unclosed ones.
"""

from __future__ import annotations

import sys
import traceback
from asyncio import selector_events
from typing import Any

import pytest

_current_test = "?"
_found: list[str] = []
_init = selector_events._SelectorTransport.__init__
_del = selector_events._SelectorTransport.__del__


def _remembering_init(self: Any, *args: Any, **kwargs: Any) -> None:
    _init(self, *args, **kwargs)
    self._lms_made = (_current_test, "".join(traceback.format_stack(sys._getframe(1), limit=40)))


def _reporting_del(self: Any) -> None:
    if getattr(self, "_sock", None) is not None:
        test, stack = getattr(self, "_lms_made", ("?", ""))
        _found.append(f"{self!r}: made in {test}, collected in {_current_test}\n{stack}")
    _del(self)


selector_events._SelectorTransport.__init__ = _remembering_init  # type: ignore[method-assign]
selector_events._SelectorTransport.__del__ = _reporting_del  # type: ignore[method-assign]


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item) -> None:
    global _current_test
    _current_test = item.nodeid


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _found:
        terminalreporter.section("unclosed transports (tests/transport_origins.py)")
        for report in _found:
            terminalreporter.write_line(report)
