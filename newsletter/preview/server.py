"""Running the preview: its socket (port 8000, or the next free one) and its server."""

from __future__ import annotations

import socket
from collections.abc import Callable

from starlette.applications import Starlette

from newsletter import serving
from newsletter.errors import NewsletterError
from newsletter.preview.state import Preview

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
PORTS_TRIED = 20  # 8000..8019 when no port is asked for


def bind(host: str = DEFAULT_HOST, port: int | None = None) -> socket.socket:
    """A listening socket on ``host``: ``port`` exactly, or 8000 and up when ``port`` is None."""
    candidates = [port] if port is not None else range(DEFAULT_PORT, DEFAULT_PORT + PORTS_TRIED)
    try:
        return serving.listen(host, candidates)
    except serving.AddressInUse:
        if port is not None:
            raise NewsletterError(f"Port {port} on {host} is already in use.",
                                  hint="Choose another with --port, or leave --port out to "
                                  "take the next free one from 8000.") from None
        last = DEFAULT_PORT + PORTS_TRIED - 1
        raise NewsletterError(f"Ports {DEFAULT_PORT} to {last} on {host} are all in use.",
                              hint="Choose a free one with --port N (or --port 0 for any)."
                              ) from None


class PreviewServer(serving.Server):
    """The preview app under uvicorn; it ends the page's event streams before stopping
    (uvicorn would otherwise wait for them)."""

    def __init__(self, app: Starlette, sock: socket.socket,
                 on_started: Callable[[], None] | None = None) -> None:
        preview: Preview = app.state.preview
        self.preview = preview

        def end_streams() -> None:
            preview.closing = True

        super().__init__(app, sock, on_started=on_started, on_exit=end_streams)
