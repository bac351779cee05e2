"""Running the simulator as a real HTTP server on loopback, in a background thread or in the foreground."""

from __future__ import annotations

import threading
from types import TracebackType

from werkzeug.serving import WSGIRequestHandler, make_server

from .app import create_app
from .auth import Auth
from .state import SimState


class _QuietHandler(WSGIRequestHandler):
    """Skips the per-request access log, which only adds noise and cost in tests and benchmarks."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


class SimulatorServer:
    """A Kling-compatible upstream; use as a context manager in tests (port 0 picks a free port)."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        token: str | None = None,
        access_key: str | None = None,
        secret_key: str | None = None,
        public_url: str | None = None,
        log_requests: bool = False,
        api_key: str | None = None,
    ) -> None:
        self.state = SimState()
        app = create_app(self.state, Auth(token, access_key, secret_key, api_key), public_url)
        handler = WSGIRequestHandler if log_requests else _QuietHandler
        self._server = make_server(host, port, app, threaded=True, request_handler=handler)
        self.url = f"http://{host}:{self._server.server_port}"
        self._thread: threading.Thread | None = None

    def start(self) -> SimulatorServer:
        self._thread = threading.Thread(target=self.serve_forever, name="kling-simulator", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        # A short poll interval keeps shutdown() quick.
        self._server.serve_forever(poll_interval=0.05)

    def stop(self) -> None:
        """Stop serving, drop pending callbacks and release the port."""
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        self._server.server_close()
        self.state.close()

    def __enter__(self) -> SimulatorServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
