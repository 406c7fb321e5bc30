"""A tiny local OpenAI-compatible chat server for the tests: the real HTTP protocol, scripted replies."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Stub:
    """Answers each chat completion with the next scripted reply; records every request."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.replies: list[str] = []
        self.reject_response_format = False
        self.fail = False
        # The reply once the scripted ones are used up.
        self.default: Callable[[dict[str, Any]], str] = lambda body: "WRONG"


@contextlib.contextmanager
def serve_stub() -> Iterator[tuple[Stub, str]]:
    """A stub server on a free local port: its state and its base URL (`.../v1`)."""
    state = Stub()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            state.requests.append({"path": self.path, "auth": self.headers.get("Authorization"), **body})
            if state.fail:
                self._send(500, {"error": {"message": "boom", "type": "server_error"}})
                return
            if state.reject_response_format and "response_format" in body:
                self._send(400, {"error": {"message": "response_format unsupported", "type": "invalid"}})
                return
            content = state.replies.pop(0) if state.replies else state.default(body)
            self._send(
                200,
                {
                    "id": "cmpl-1",
                    "object": "chat.completion",
                    "created": 0,
                    "model": body["model"],
                    "choices": [
                        {
                            "index": 0,
                            "finish_reason": "stop",
                            "message": {"role": "assistant", "content": content},
                        }
                    ],
                },
            )

        def _send(self, status: int, payload: dict[str, Any]) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state, f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()
