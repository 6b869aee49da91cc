"""The embedded default: write each message into a Maildir folder a mail client can open.

Each message is written to ``tmp/`` and renamed into ``new/``, so a reader never sees half a
message and a crash leaves at most a stray file in ``tmp/``. Point Thunderbird, mutt
(``mutt -f maildir``) or any Maildir reader at the folder to see what recipients will get.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from itertools import count
from pathlib import Path

from newsletter.adapters.base import Adapter, AdapterSettings, TransientError
from newsletter.message import OutgoingMessage

_sequence = count()
_lock = threading.Lock()


def maildir_path(settings: AdapterSettings) -> Path:
    """``--maildir``, then ``NEWSLETTER_MAILDIR``, then ``maildir/`` in the project folder."""
    if settings.maildir:
        return Path(settings.maildir)
    value = settings.env.get("NEWSLETTER_MAILDIR", "").strip()
    return Path(value) if value else settings.root / "maildir"


class MaildirAdapter(Adapter):
    """Delivers into a local Maildir: nothing leaves the machine."""

    name = "maildir"

    def __init__(self, settings: AdapterSettings) -> None:
        super().__init__(settings)
        self.path = maildir_path(settings)
        self._host = socket.gethostname().replace("/", "_").replace(":", "_")

    def describe(self) -> str:
        return f"maildir {self.path}"

    def open(self) -> None:
        try:
            for sub in ("tmp", "new", "cur"):
                (self.path / sub).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            from newsletter.errors import ConfigurationError

            raise ConfigurationError(
                f"cannot create the maildir {self.path}: {exc.strerror}",
                hint="choose another folder with --maildir or NEWSLETTER_MAILDIR") from exc

    def send(self, message: OutgoingMessage) -> str:
        with _lock:
            number = next(_sequence)
        name = f"{time.time():.6f}.P{os.getpid()}Q{number}.{self._host}"
        temporary = self.path / "tmp" / name
        # Maildir files use the local line ending.
        data = message.mime.replace(b"\r\n", b"\n")
        try:
            with open(temporary, "wb") as handle:
                handle.write(data)
            os.replace(temporary, self.path / "new" / name)
        except OSError as exc:
            temporary.unlink(missing_ok=True)
            raise TransientError(f"cannot write {temporary}: {exc.strerror}") from exc
        return name
