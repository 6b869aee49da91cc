"""Helpers shared by tests (fixtures live in conftest.py)."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from newsletter import send as sending
from newsletter.adapters.base import AdapterSettings, Control, LoopOptions, load_adapter
from newsletter.db import deliveries, open_db, recipients
from newsletter.message import MessageFactory, OutgoingMessage, Recipient
from newsletter.project import Project
from newsletter.tracking.tokens import Signer


def mailgun_env(url: str, key: str = "key-test", domain: str = "mg.example.org") -> dict:
    return {"MAILGUN_API_KEY": key, "MAILGUN_DOMAIN": domain, "MAILGUN_API_URL": url}


def postmark_env(url: str, token: str = "server-token", stream: str = "newsletter") -> dict:
    env = {"POSTMARK_SERVER_TOKEN": token, "POSTMARK_API_URL": url}
    if stream:
        env["POSTMARK_MESSAGE_STREAM"] = stream
    return env


def sendgrid_env(url: str, key: str = "SG.test") -> dict:
    return {"SENDGRID_API_KEY": key, "SENDGRID_API_URL": url}


def prepare_send(project_root: Path, env: dict[str, str], adapter: str,
                 lists: tuple[str, ...] = ("schools", "councils")) -> sending.Prepared:
    """``send.prepare`` for the sample issue, as the CLI calls it."""
    return sending.prepare(Project.load(project_root), "2026-spring", lists, adapter=adapter,
                           env=env)


def run_send(project_root: Path, env: dict[str, str], adapter: str, timeout: float = 30.0,
             **options) -> sending.Outcome:  # type: ignore[no-untyped-def]
    """Prepare and run a send of the sample issue; ``timeout`` is the adapter's read timeout."""
    prepared = prepare_send(project_root, env, adapter)
    prepared.settings.timeout = timeout
    try:
        return sending.run(prepared, LoopOptions(retry_delay=0, **options))
    finally:
        prepared.close()


def ledger_rows(project_root: Path) -> dict[str, dict]:
    """Every delivery row of the project's ledger, by recipient address."""
    database = open_db(Project.load(project_root).db_url())
    try:
        with database.engine.connect() as conn:
            rows = conn.execute(sa.select(recipients.c.address, deliveries).join(
                deliveries, deliveries.c.recipient_id == recipients.c.id))
            return {r.address: dict(r._mapping) for r in rows}
    finally:
        database.close()


def messages(project_root: Path, built, addresses: list[str],  # type: ignore[no-untyped-def]
             test: bool = False) -> list[OutgoingMessage]:
    """Messages of the built issue ``built`` to ``addresses`` (one list, made-up pseudonyms)."""
    factory = MessageFactory(built, Project.load(project_root), Signer({"k": b"s"}, "k"),
                             test=test)
    return [factory.make(Recipient(a, "", f"p{i}", f"<m{i}.spring@example.org>", "schools"))
            for i, a in enumerate(addresses)]


def adapter(name: str, project_root: Path, env: dict[str, str], timeout: float = 30.0):  # type: ignore[no-untyped-def]
    """An opened adapter of kind ``name`` with a control that never pauses the run."""
    made = load_adapter(name)(AdapterSettings(root=project_root, env=env, timeout=timeout))
    made.control = Control(pause_after=0)
    made.open()
    return made
