"""Run the application under uvicorn on a socket bound here (so port 0 picks a free port)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from typing import Any

from ..errors import InvalidInput
from .config import ServeConfig
from .pool import ModelPool


def bind(host: str, port: int) -> socket.socket:
    """Return a listening TCP socket on ``host:port`` (port 0: a free one)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # accepted sockets inherit it
    try:
        sock.bind((host, port))
    except OSError as err:
        sock.close()
        raise InvalidInput(
            f"Cannot listen on {host}:{port}: {err.strerror}.",
            hint="Pick another --port (0 picks a free one), or stop what uses it.",
        ) from err
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def url_of(sock: socket.socket) -> str:
    """Return ``http://host:port`` of a bound socket."""
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class Server:
    """One uvicorn server over :func:`registry.serve.app.create_app`, run here or in a thread."""

    def __init__(
        self,
        registry: Any,
        config: ServeConfig,
        on_ready: Callable[[str, ModelPool], None] | None = None,
    ) -> None:
        import uvicorn

        from .app import create_app

        self.config = config.check()
        self.sock = bind(config.host, config.port)
        self.url = url_of(self.sock)
        self.ready = threading.Event()
        self.pool: ModelPool | None = None

        def ready(pool: ModelPool) -> None:
            self.pool = pool
            self.ready.set()
            if on_ready is not None:
                on_ready(self.url, pool)

        self.app = create_app(registry, config, on_ready=ready)
        self.server = uvicorn.Server(
            uvicorn.Config(
                self.app,
                log_level="warning",
                access_log=False,
                lifespan="on",
                timeout_graceful_shutdown=5,
            )
        )
        self._thread: threading.Thread | None = None

    def load(self) -> ModelPool:
        """Load the models before taking requests, so a failure is a plain error here."""
        pool: ModelPool = self.app.state.pool
        if not pool.started:
            try:
                pool.start()
            except BaseException:
                self.sock.close()
                raise
        return pool

    def run(self) -> None:
        """Serve until interrupted (Ctrl-C) in this thread."""
        try:
            self.server.run(sockets=[self.sock])
        finally:
            self.sock.close()

    def start_in_thread(self, timeout: float = 120.0) -> Server:
        """Serve from a daemon thread; return once models are loaded and requests are taken."""
        self.load()
        self._thread = threading.Thread(target=self.run, name="uvicorn", daemon=True)
        self._thread.start()
        if not self.ready.wait(timeout):
            raise TimeoutError(f"the server at {self.url} did not start in {timeout} s")
        while not self.server.started:
            if not self._thread.is_alive():
                raise RuntimeError("the server stopped while starting")
            threading.Event().wait(0.01)
        return self

    def stop(self) -> None:
        """Ask uvicorn to finish and wait for the thread."""
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=30)
