"""The python-socketio and python-engineio minor versions our subclasses were written against.

``realtime/engine.py``, ``realtime/sio.py``, ``realtime/transport.py`` and
``realtime/fanout.py`` override private methods of both libraries and read
their private state (``AsyncSocket._websocket_handler``, ``schedule_ping``,
``AsyncServer._handle_eio_message``, ``_handle_eio_connect``, ``server.sockets``,
the client manager's ``rooms``). A new minor version may change any of them without notice, so
``pyproject.toml`` pins exactly these minors and ``tests/test_pins.py`` fails
on any other installed version. Moving to a new minor: read each override
against the new source, then run ``tests/test_realtime_protocol.py`` and the
official protocol suites (``scripts/conformance``), then change both here and
in ``pyproject.toml``.
"""

from __future__ import annotations

WRITTEN_FOR = {"python-socketio": "5.18", "python-engineio": "4.15"}
