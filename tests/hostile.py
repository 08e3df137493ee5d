"""A purpose-built hostile server for the end-to-end tests of the HTTP edge: it speaks just enough HTTP/1.1
to read a request, records it, and answers with whatever raw bytes the test scripts — legal but unkind
answers (gzip, redirects, floods of headers, absurd lengths), over plain TCP or TLS, on 127.0.0.1."""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


Answer = Callable[[Seen, int], bytes]  # the request and its number (1, 2, ...) → the raw answer


@dataclass
class HostileServer:
    answer: Answer
    tls: ssl.SSLContext | None = None
    seen: list[Seen] = field(default_factory=list)
    handshakes_failed: int = 0

    def __post_init__(self) -> None:
        self._socket = socket.socket()
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind(("127.0.0.1", 0))
        self._socket.listen(16)
        self.port = self._socket.getsockname()[1]
        self._lock = threading.Lock()
        threading.Thread(target=self._serve, daemon=True).start()

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    @property
    def posts(self) -> int:
        with self._lock:
            return sum(s.method == "POST" for s in self.seen)

    def close(self) -> None:
        self._socket.close()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self._socket.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(connection,), daemon=True).start()

    def _handle(self, connection: socket.socket) -> None:
        connection.settimeout(10)
        try:
            if self.tls is not None:
                try:
                    connection = self.tls.wrap_socket(connection, server_side=True)
                except (ssl.SSLError, OSError):
                    with self._lock:
                        self.handshakes_failed += 1
                    return
            stream = connection.makefile("rb")
            while True:
                request = _read_request(stream)
                if request is None:
                    return
                with self._lock:
                    self.seen.append(request)
                    number = len(self.seen)
                connection.sendall(self.answer(request, number))
        except OSError:
            return
        finally:
            connection.close()


def _read_request(stream: object) -> Seen | None:
    readline = stream.readline  # type: ignore[attr-defined]
    line = readline(65536)
    if not line:
        return None
    method, path, _ = line.decode("latin-1").split(" ", 2)
    headers: dict[str, str] = {}
    while (header := readline(65536)) not in (b"\r\n", b"\n", b""):
        name, value = header.decode("latin-1").split(":", 1)
        headers[name.strip().lower()] = value.strip()
    body = stream.read(int(headers.get("content-length", 0)))  # type: ignore[attr-defined]
    return Seen(method, path, headers, body)


def raw(status: str, body: bytes = b"", headers: dict[str, str] | None = None, length: int | None = None) -> bytes:
    """An answer's bytes: status line, headers (Content-Length unless given), body."""
    lines = [f"HTTP/1.1 {status}"]
    head = {"Content-Length": str(len(body) if length is None else length), **(headers or {})}
    lines += [f"{k}: {v}" for k, v in head.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def self_signed(folder: object) -> tuple[str, str]:
    """A certificate for 127.0.0.1 and its key, made with openssl for this test: (cert path, key path)."""
    import subprocess
    from pathlib import Path

    where = Path(str(folder))
    cert, key = where / "cert.pem", where / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=60)
    return str(cert), str(key)
