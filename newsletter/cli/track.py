"""``newsletter track serve`` and ``newsletter track purge``: the tracking server and retention."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from newsletter.cli import load_project
from newsletter.cli.options import db_option
from newsletter.project import Project

if TYPE_CHECKING:
    from newsletter.db import Database



@click.group("track")
def track() -> None:
    """Run the click tracker and manage the events it stores.

    Example:

        newsletter track serve --port 8025
    """


@track.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", default=8025, show_default=True, type=click.IntRange(1, 65535),
              help="Port to listen on.")
@db_option
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64),
              help="Worker processes (granian only).")
@click.option("--server", "server", type=click.Choice(["granian", "uvicorn"]), default="granian",
              show_default=True,
              help="HTTP server: granian measured faster here (docs/tracking.md).")
@click.option("--forwarded-allow-ips", default="127.0.0.1", show_default=True,
              help="Reverse proxies whose X-Forwarded-For is trusted for the client address.")
@click.option("--create-db", is_flag=True,
              help="Create the database if it does not exist, even though the project has one "
              "elsewhere.")
@click.option("--flush-interval", default=0.05, show_default=True, type=click.FloatRange(0.001),
              help="Seconds between batched writes of queued events.")
@click.option("--journal", "journal", metavar="DIR", default=None, type=click.Path(file_okay=False),
              help="Folder where each hit is written before it is answered, so that a crash "
              "loses none (default: tracker-journal in the project).")
@click.option("--no-journal", is_flag=True, hidden=True,
              help="Benchmarks only: answer hits before they are on disk.")
def serve(host: str, port: int, db: str | None, workers: int, server: str,
          forwarded_allow_ips: str, create_db: bool, flush_interval: float, journal: str | None,
          no_journal: bool) -> None:
    """Serve tracked links (/c/), the web version (/v/), opens (/o/) and unsubscribe (/u/).

    Every hit is written to a journal file before it is answered and stored in the database
    in batches; after a crash (even SIGKILL) the next start stores what the journal holds.
    Stops cleanly on Ctrl+C or SIGTERM, storing every click it has redirected.

    Example:

        newsletter track serve --host 127.0.0.1 --port 8025
    """
    from newsletter.db import open_db, shown_url
    from newsletter.tracking.tokens import signer_for

    project = load_project()
    url = project.db_url(db, create=create_db)
    journal_dir = None if no_journal else Path(journal or project.root / "tracker-journal")
    # Open, migrate and make sure a signing key exists once, here, before any worker starts:
    # a bad --db is reported now, and workers never race to create the first key.
    database = open_db(url, patience=project.settings.db_wait)
    try:
        signer_for(database, project.settings.secret_key)
        _name_unsaved_files(database, project.settings.spill_dir)
    finally:
        database.close()
    if workers > 1 and server != "granian":
        raise click.UsageError("--workers needs --server granian")
    from newsletter.hooks import provider_for

    for name in ("sendgrid",):      # a key that cannot be read is refused now, not per request
        provider_for(name, project.settings.webhook_env)
    _check_address(host, port)
    click.echo(f"Tracking on http://{host}:{port}/ with {server} (database: {shown_url(url)}). "
               "Stop with Ctrl+C.", err=True)
    if server == "granian":
        _serve_granian(project, url, host, port, workers, forwarded_allow_ips, flush_interval,
                       journal_dir)
    else:
        _serve_uvicorn(project, url, host, port, forwarded_allow_ips, flush_interval,
                       journal_dir)


def _name_unsaved_files(database: Database, spill_dir: str) -> None:
    """Point at events older versions saved to files and that are not imported yet."""
    import tempfile

    from newsletter.tracking import events

    folder = Path(spill_dir or tempfile.gettempdir())
    waiting = [path for path in sorted(folder.glob(events.SPILL_PATTERN))
               if not events.spill_imported(database, path)]
    if waiting:
        click.echo(f"Found {len(waiting)} file(s) of events an older tracker could not store: "
                   f"{', '.join(str(p) for p in waiting)}\n    hint: store them with "
                   "`newsletter track import FILE...` (each file is imported once)", err=True)


def _check_address(host: str, port: int) -> None:
    """Fail with a message, not a server's panic, when the address cannot be listened on."""
    from newsletter import serving
    from newsletter.errors import NewsletterError

    try:
        serving.probe(host, port)
    except serving.AddressInUse as exc:
        if exc.holder is not None:
            pid, command = exc.holder
            raise NewsletterError(
                f"cannot listen on {host}:{port}: Address already in use by process {pid} "
                f"({command[:120]})",
                hint=f"if that is a tracker left running, stop it with `kill {pid}`; "
                "or choose another --port or --host") from exc
        raise NewsletterError(
            f"cannot listen on {host}:{port}: Address already in use",
            hint="is another tracker running there? choose another --port or --host") from exc


def _serve_granian(project: Project, url: str, host: str, port: int, workers: int,
                   forwarded_allow_ips: str, flush_interval: float,
                   journal_dir: Path | None) -> None:
    import os

    from granian import Granian
    from granian.constants import HTTPModes, Interfaces, Loops
    from granian.http import HTTP1Settings
    from granian.log import LogLevels

    from newsletter.settings import TrackerWorker
    from newsletter.tracking import hardening

    # Granian imports the app in each worker process by name: the settings travel in the
    # environment (see server.app_from_env). Each worker's lifespan shutdown, on SIGTERM or
    # Ctrl+C, stores its queued events and prints how many it stored.
    TrackerWorker(url, flush_interval, tuple(p.strip() for p in forwarded_allow_ips.split(",")
                                             if p.strip()),
                  journal=str(journal_dir.resolve()) if journal_dir else "",
                  soft_bounce_limit=project.settings.soft_bounce_limit,
                  main_pid=os.getpid(),
                  public_url=project.settings.tracking_url,
                  search_engines=project.settings.search_engines).export()
    # Hardened against idle and slow clients (see tracking/hardening.py); workers inherit
    # the raised descriptor limit.
    fd_limit = hardening.raise_fd_limit()
    Granian("newsletter.tracking.server:app_from_env", factory=True,
            interface=Interfaces.ASGI, address=host, port=port, workers=workers,
            loop=Loops.uvloop, websockets=False, log_access=False, log_level=LogLevels.warning,
            http=HTTPModes.http1, backlog=hardening.LISTEN_BACKLOG,
            backpressure=hardening.backpressure(fd_limit),
            http1_settings=HTTP1Settings(
                max_buffer_size=64 * 1024,
                header_read_timeout=int(hardening.HEADER_READ_TIMEOUT * 1000))).serve()


def _serve_uvicorn(project: Project, url: str, host: str, port: int,
                   forwarded_allow_ips: str, flush_interval: float,
                   journal_dir: Path | None) -> None:
    import signal

    import uvicorn

    from newsletter.tracking import classify
    from newsletter.tracking.public import Site
    from newsletter.tracking.server import create_app

    settings = project.settings
    from newsletter.tracking import hardening

    hardening.raise_fd_limit()
    app = create_app(url, flush_interval=flush_interval, secret_key=settings.secret_key,
                     spill_dir=settings.spill_dir, journal_dir=journal_dir,
                     patience=settings.db_wait,
                     webhook_env=settings.webhook_env,
                     soft_bounce_limit=settings.soft_bounce_limit,
                     rules=classify.Rules(networks=classify.scanner_networks(
                         settings.scanner_networks)),
                     site=Site(settings.tracking_url, settings.search_engines))
    try:
        config = uvicorn.Config(
            app, host=host, port=port, loop="uvloop", http="httptools", lifespan="on",
            backlog=hardening.LISTEN_BACKLOG,
            timeout_keep_alive=round(hardening.HEADER_READ_TIMEOUT),
            access_log=False, log_level="warning", proxy_headers=True,
            forwarded_allow_ips=forwarded_allow_ips, server_header=False,
            timeout_graceful_shutdown=10)
        # uvicorn handles SIGTERM/SIGINT (graceful shutdown, then the lifespan flushes the event
        # writer) and afterwards re-raises the signal to the previous handler; ours just lets
        # the command finish and exit 0, so a stop is a normal, clean exit.
        previous = {sig: signal.signal(sig, lambda *_: None)
                    for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            uvicorn.Server(config).run()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    finally:
        app.close()
    click.echo(f"Stopped; {app.writer.stored} event(s) stored.", err=True)


@track.command("purge")
@click.option("--older-than", "older_than", required=True, metavar="AGE",
              help="Delete events (and feedback comments) older than this: a number and s, m, "
              "h, d or w (e.g. 180d).")
@click.option("--issue", default=None, help="Only this issue's events.")
@db_option
def purge(older_than: str, issue: str | None, db: str | None) -> None:
    """Delete old tracking events and feedback comments (data retention).

    Example:

        newsletter track purge --older-than 180d
    """
    from newsletter.db import open_db
    from newsletter.report import require_database
    from newsletter.tracking import events

    seconds = events.parse_age(older_than)
    project = load_project()
    url = project.db_url(db, can_create=False)
    require_database(url)
    database = open_db(url, patience=project.settings.db_wait)
    try:
        count, comments = events.purge(database, seconds, issue=issue)
    finally:
        database.close()
    click.echo(f"Deleted {count} event(s) and {comments} feedback comment(s) older than "
               f"{older_than}.")


@track.command("recount")
@click.option("--issue", default=None, help="Only this issue's counts.")
@db_option
def recount(issue: str | None, db: str | None) -> None:
    """Count the events again and replace the counts the reports read.

    The counts are kept up to date as events are written; recount after events were
    restored from a backup or changed by anything other than this program.

    Example:

        newsletter track recount --issue 2026-spring
    """
    from newsletter.db import open_db
    from newsletter.report import require_database
    from newsletter.tracking import rollup

    project = load_project()
    url = project.db_url(db, can_create=False)
    require_database(url)
    database = open_db(url, patience=project.settings.db_wait)
    try:
        with database.engine.begin() as conn:
            differ = rollup.differences(conn, issue)
            rollup.rebuild(conn, issue)
    finally:
        database.close()
    what = f"issue {issue}" if issue else "every issue"
    if differ:
        click.echo(f"Recounted {what}: {differ} count(s) were wrong and are now corrected.")
    else:
        click.echo(f"Recounted {what}: every count was right.")


@track.command("import")
@click.argument("files", nargs=-1, required=True,
                type=click.Path(exists=True, dir_okay=False, path_type=Path))
@db_option
def import_unsaved(files: tuple[Path, ...], db: str | None) -> None:
    """Store events an older tracker saved to events-unsaved-*.jsonl files.

    Older versions wrote clicks the database could not take at shutdown to such files (named
    on stderr). Each file is imported once: importing it again stores nothing twice.

    Example:

        newsletter track import /tmp/events-unsaved-4242-1780000000.jsonl
    """
    from newsletter.db import open_db
    from newsletter.report import require_database
    from newsletter.tracking import events

    project = load_project()
    url = project.db_url(db, can_create=False)
    require_database(url)
    database = open_db(url, patience=project.settings.db_wait)
    try:
        for path in files:
            count, before = events.import_spill(database, path)
            if before:
                click.echo(f"{path}: already imported; nothing stored twice.")
            else:
                click.echo(f"{path}: stored {count} event(s); the file may now be deleted.")
    finally:
        database.close()


COMMANDS = [track]
