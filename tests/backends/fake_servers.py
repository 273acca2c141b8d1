"""Small HTTP test doubles on loopback: an Ollama-format server and a fault injector.

They are doubles for the transport (documented response formats, failures on demand), never
backends: the backends under test talk to them over real TCP connections.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Handler = Callable[[BaseHTTPRequestHandler, dict[str, Any]], None]


@contextmanager
def serve(routes: dict[str, Handler]) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """Serve routes on a free loopback port; yields (base URL, the requests received)."""
    received: list[dict[str, Any]] = []

    class _Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _dispatch(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}") if length else {}
            received.append({"method": self.command, "path": self.path, "body": body})
            handler = routes.get(self.path)
            if handler is None:
                self.send_error(404)
                return
            handler(self, body)

        do_GET = do_POST = _dispatch

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", received
    finally:
        server.shutdown()
        server.server_close()


def send_json(handler: BaseHTTPRequestHandler, payload: Any, status: int = 200) -> None:
    data = json.dumps(payload).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)


def send_ndjson(handler: BaseHTTPRequestHandler, chunks: list[dict[str, Any]]) -> None:
    data = b"".join(json.dumps(c).encode() + b"\n" for c in chunks)
    handler.send_response(200)
    handler.send_header("Content-Type", "application/x-ndjson")
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)
