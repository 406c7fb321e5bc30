"""A TCP proxy a test can cut and restore: a network partition between memlake and a service.

Stopping the service itself would not do for moto's S3 server, which keeps its
buckets in memory: they would be gone when it came back. The proxy listens on a
port of its own and forwards each connection to the service; `down()` ends it,
with every open connection (new ones are refused, as by a host that is away),
`up()` listens again on the same port.

It runs as a process of its own: delta-rs holds the GIL through some of its
blocking calls, and a proxy in the test's own threads would wait for them.
"""

from __future__ import annotations

import os
import selectors
import socket
import subprocess
import sys
import threading


class TcpProxy:
    """Forwards 127.0.0.1:`port` to `target` (host, port) while up."""

    def __init__(self, target: tuple[str, int]) -> None:
        self._target = target
        self._process: subprocess.Popen[str] | None = None
        self.port = 0

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def up(self) -> None:
        if self._process is not None:
            return
        if not self.port:
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", 0))
                self.port = probe.getsockname()[1]
        host, port = self._target
        self._process = subprocess.Popen(
            [sys.executable, __file__, str(self.port), host, str(port)],
            stdin=subprocess.PIPE,  # its end closes with this process: the proxy then exits
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert self._process.stdout is not None
        if self._process.stdout.readline().strip() != "listening":
            self.down()
            raise RuntimeError(f"the proxy could not listen on 127.0.0.1:{self.port}")

    def down(self) -> None:
        if self._process is None:
            return
        self._process.kill()
        self._process.wait()
        for pipe in (self._process.stdin, self._process.stdout):
            if pipe is not None:
                pipe.close()
        self._process = None


def _serve(port: int, target: tuple[str, int]) -> None:
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(64)
    print("listening", flush=True)
    while True:
        client, _ = listener.accept()
        try:
            server = socket.create_connection(target)
        except OSError:
            client.close()
            continue
        threading.Thread(target=_pipe, args=(client, server), daemon=True).start()


def _pipe(a: socket.socket, b: socket.socket) -> None:
    with selectors.DefaultSelector() as selector, a, b:
        selector.register(a, selectors.EVENT_READ, b)
        selector.register(b, selectors.EVENT_READ, a)
        try:
            while True:
                for key, _ in selector.select():
                    data = key.fileobj.recv(65536)  # type: ignore[union-attr]
                    if not data:
                        return
                    key.data.sendall(data)
        except OSError:
            return


def _exit_with_parent() -> None:
    sys.stdin.read()  # returns at end of file: the test's process is gone
    os._exit(0)


if __name__ == "__main__":
    threading.Thread(target=_exit_with_parent, daemon=True).start()
    _serve(int(sys.argv[1]), (sys.argv[2], int(sys.argv[3])))
