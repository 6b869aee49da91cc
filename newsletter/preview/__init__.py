"""Preview an issue in the browser while drafting it, with live reload.

One step per module::

    state.py     Preview: the latest build (a Snapshot) and the pages told of each rebuild
    watcher.py   following the files the last build read; building again on save
    files.py     the only project files the page may serve: those the email refers to
    app.py       create_app: the Starlette app (page, panels, email, events, files)
    server.py    bind (port 8000 or the next free one) and PreviewServer (uvicorn)

A build that fails never stops the server: the page and the terminal show the errors instead
of the email, and the next good save brings the email back.
"""

from newsletter.preview.app import create_app
from newsletter.preview.files import inside, referenced_files, safe_relative
from newsletter.preview.server import DEFAULT_HOST, DEFAULT_PORT, PreviewServer, bind
from newsletter.preview.state import Preview, Snapshot
from newsletter.serving import LOOPBACK_NAMES, allowed_hosts, url_for

__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "LOOPBACK_NAMES", "Preview", "PreviewServer",
           "Snapshot", "allowed_hosts", "bind", "create_app", "inside", "referenced_files",
           "safe_relative", "url_for"]
