"""A small HTTP client for the server (tests, benchmarks, scripts); standard library only."""

from __future__ import annotations

import http.client
import json
import socket
from typing import Any
from urllib.parse import urlsplit


class Client:
    """One persistent connection to a server; not shared between threads."""

    def __init__(self, url: str, token: str | None = None, timeout: float = 60.0) -> None:
        parts = urlsplit(url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.token = token
        self.timeout = timeout
        self._conn: http.client.HTTPConnection | None = None

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        """Send one request; return (status, headers, body bytes). Reconnects once if dropped."""
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        head = {"content-type": "application/json"} if data is not None else {}
        if self.token:
            head["authorization"] = f"Bearer {self.token}"
        head.update(headers or {})
        for attempt in (1, 2):
            if self._conn is None:
                self._conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            if self._conn.sock is None:  # new, or closed by the server after a response
                self._conn.connect()
                # http.client sends headers and body in two writes: without NODELAY, Nagle holds
                # the body until the server's delayed ACK (~40 ms). urllib3 sets it the same way.
                assert self._conn.sock is not None
                self._conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            try:
                self._conn.request(method, path, body=data, headers=head)
                resp = self._conn.getresponse()
                payload = resp.read()
                return resp.status, {k.lower(): v for k, v in resp.getheaders()}, payload
            except (ConnectionError, http.client.RemoteDisconnected, http.client.BadStatusLine):
                self.close()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def json(self, method: str, path: str, body: Any = None, **kw: Any) -> tuple[int, Any]:
        """Send one request and decode the JSON answer; return (status, data)."""
        status, _, payload = self.request(method, path, body, **kw)
        return status, json.loads(payload) if payload else None

    def predict(self, body: dict[str, Any]) -> tuple[int, Any]:
        """POST /v1/predict."""
        return self.json("POST", "/v1/predict", body)

    def close(self) -> None:
        """Close the connection."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None
