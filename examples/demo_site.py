"""The demo's website: a real HTTP server on 127.0.0.1 with pages of every kind.

It runs in a thread of its own (Python's `http.server`), so the demo's Trio
run talks to it over real sockets. Each path says how the page behaves:

* ``/fast/N``: 200 at once;
* ``/slow/N``: 200 after ``slow`` seconds;
* ``/fail/N``: 500 (a broken backend);
* ``/missing/N``: 404 (a dead link);
* ``/hang/N``: never answers until the site closes (a stuck server).
"""

from __future__ import annotations

import contextlib
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from collections.abc import Generator

KINDS = ("fast", "slow", "fail", "missing", "hang")


class _Handler(BaseHTTPRequestHandler):
    """Answers by the first part of the path."""

    protocol_version = "HTTP/1.1"  # keep-alive, as real sites do
    slow: ClassVar[float] = 0.2
    closing: ClassVar[threading.Event] = threading.Event()

    def do_GET(self) -> None:
        kind = self.path.strip("/").split("/", 1)[0]
        if kind == "hang":
            self.closing.wait()
            return
        if kind == "slow":
            self.closing.wait(self.slow)
        status = {"fail": 500, "missing": 404}.get(kind, 200)
        if kind not in KINDS:
            status = 404
        body = b"x" * (200 + 10 * len(self.path))
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        """Keep the demo's output clean: no access log."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # the default 5 drops SYNs under a burst

    def handle_error(self, request: object, client_address: object) -> None:
        """A client that went away (a job cancelled by its time limit) is normal."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)  # type: ignore[arg-type]


class DemoSite:
    """The running site: its base URL, and `close` to stop it."""

    def __init__(self, slow: float) -> None:
        closing = self._closing = threading.Event()

        class Handler(_Handler):
            pass

        Handler.slow = slow
        Handler.closing = closing
        self._server = _Server(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="demo site", daemon=True
        )
        self._thread.start()
        host, port = self._server.server_address[:2]
        self.url = f"http://{host!s}:{port}"

    def close(self) -> None:
        """Release hanging requests and stop serving."""
        self._closing.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


@contextlib.contextmanager
def serve(slow: float = 0.2) -> Generator[DemoSite, None, None]:
    """Yield a running `DemoSite` on a free port; stop it afterwards."""
    site = DemoSite(slow)
    try:
        yield site
    finally:
        site.close()
