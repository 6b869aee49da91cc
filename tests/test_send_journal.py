"""Send's journal of answers: what a killed `send` left is applied to the ledger exactly.

"Dead" senders are real processes killed with SIGKILL, so locks and half-written files are
what a crash leaves. SQLite and PostgreSQL.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import sqlalchemy as sa

from newsletter import db, ledger
from newsletter.send_journal import AnswerJournal, replay

SLUG = "spring"


def seed(database, count: int = 8) -> None:  # type: ignore[no-untyped-def]
    with database.engine.begin() as conn:
        conn.execute(db.recipients.insert(), [
            {"id": i, "address": f"r{i}@example.org", "pseudonym": f"s{i}", "created_at": 0.0}
            for i in range(1, count + 1)])
        conn.execute(db.deliveries.insert(), [
            {"issue": SLUG, "recipient_id": i, "status": "deferred" if i == 8 else "pending",
             "last_error": "RCPT TO: 451 4.7.1 greylisted" if i == 8 else "",
             "message_id": f"<{SLUG}.{i}@example.org>", "updated_at": 0.0}
            for i in range(1, count + 1)])


def rows(database) -> dict[int, tuple[str, int, str, str]]:  # type: ignore[no-untyped-def]
    d = db.deliveries
    with database.engine.connect() as conn:
        return {r.recipient_id: (r.status, r.attempts, r.last_error, r.claimed_by)
                for r in conn.execute(sa.select(d).where(d.c.issue == SLUG))}


@pytest.fixture
def ledger_db(storage_url):  # type: ignore[no-untyped-def]
    database = db.open_db(storage_url)
    seed(database)
    yield database
    database.close()


def killed_sender(database, folder: Path, script: str) -> None:  # type: ignore[no-untyped-def]
    """Run ``script`` with a journal ``j`` and a claim ``rows`` of 8 rows (token ``t``), then
    SIGKILL the process from inside: no cleanup runs, as in a crash."""
    code = textwrap.dedent(f"""
        import os, signal
        from pathlib import Path
        from newsletter import db, ledger
        from newsletter.send_journal import AnswerJournal
        from newsletter.status import Status
        database = db.open_db({database.url!r})
        j = AnswerJournal(Path({str(folder)!r}), database)
        j.open()
        t = "dead-sender:1"
        j.claimed(t, {SLUG!r})
        rows = ledger.claim(database, {SLUG!r}, t, 8, ("pending", "deferred"))
        R = ledger.Result
    """) + textwrap.dedent(script) + "\nos.kill(os.getpid(), signal.SIGKILL)\n"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == -9, done.stderr


def test_replay_records_answers_marks_in_flight_and_gives_back_the_rest(ledger_db,
                                                                        tmp_path) -> None:  # type: ignore[no-untyped-def]
    killed_sender(ledger_db, tmp_path, """
        j.trying(t, [1]); j.answered(t, [R(1, Status.SENT, provider_id="250 ok")])
        j.trying(t, [2]); j.answered(t, [R(2, Status.DEFERRED, "451 later", next_attempt_at=5)])
        ledger.record(database, "spring", t, [R(1, Status.SENT, provider_id="250 ok")])
        j.trying(t, [3])                     # handed over; killed before the answer came
    """)
    assert {rid: r[0] for rid, r in rows(ledger_db).items()} == {
        1: "sent", **dict.fromkeys(range(2, 9), "sending")}
    done = replay(ledger_db, tmp_path)
    assert (done.recorded, done.in_flight, done.given_back) == (1, 1, 5)
    after = rows(ledger_db)
    assert after[1][0] == "sent"
    assert after[2][:3] == ("deferred", 1, "451 later")
    assert after[3][:2] == ("unknown", 1) and "may have been delivered" in after[3][2]
    assert {after[i][0] for i in range(4, 8)} == {"pending"}
    assert after[8][:3] == ("deferred", 0, "RCPT TO: 451 4.7.1 greylisted")   # as it was
    assert not any(r[3] for r in after.values())                  # nothing still claimed
    assert list(tmp_path.glob("answers-*.jsonl")) == []
    assert not replay(ledger_db, tmp_path)                         # nothing left to do


def test_a_row_given_back_untried_keeps_its_last_error(ledger_db, tmp_path) -> None:  # type: ignore[no-untyped-def]
    killed_sender(ledger_db, tmp_path, """
        j.answered(t, [R(8, Status.DEFERRED, None, counts_as_attempt=False)])
    """)
    replay(ledger_db, tmp_path)
    assert rows(ledger_db)[8][:3] == ("deferred", 0, "RCPT TO: 451 4.7.1 greylisted")


def test_a_half_written_last_line_counts_as_no_answer(ledger_db, tmp_path) -> None:  # type: ignore[no-untyped-def]
    killed_sender(ledger_db, tmp_path, "j.trying(t, [1])")
    [segment] = tmp_path.glob("answers-*.jsonl")
    with segment.open("a") as out:
        out.write('["r","dead-sender:1",1,"sen')                  # cut short by the kill
    done = replay(ledger_db, tmp_path)
    assert done.in_flight == 1 and rows(ledger_db)[1][0] == "unknown"


def test_a_live_sender_journal_is_left_alone(ledger_db, tmp_path) -> None:  # type: ignore[no-untyped-def]
    journal = AnswerJournal(tmp_path, ledger_db)
    journal.open()
    token = ledger.worker_token()
    journal.claimed(token, SLUG)
    ledger.claim(ledger_db, SLUG, token, 2, ("pending",))
    journal.trying(token, [1])
    assert not replay(ledger_db, tmp_path)
    assert rows(ledger_db)[1][0] == "sending"
    journal.close(everything_recorded=False)


def test_a_journal_of_another_database_is_left_alone(ledger_db, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    killed_sender(ledger_db, tmp_path, "j.trying(t, [1])")
    [segment] = tmp_path.glob("answers-*.jsonl")
    header, rest = segment.read_bytes().split(b"\n", 1)
    segment.write_bytes(header.replace(db.database_id(ledger_db).encode(), b"0" * 32)
                        + b"\n" + rest)
    assert not replay(ledger_db, tmp_path)
    assert segment.exists()
    assert f"{segment} holds answers for another database" in capsys.readouterr().err


# --- through `newsletter send` ------------------------------------------------------------------


def send(*args: str):  # type: ignore[no-untyped-def]
    from click.testing import CliRunner

    from newsletter.cli import main

    return CliRunner().invoke(main, ["send", "2026-spring", "--to", "schools", "--to",
                                     "councils", "--adapter", "smtp", "--yes",
                                     "--allow-local-tracking", *args])


def errors(root: Path) -> dict[str, tuple[str, str]]:
    database = db.open_db("sqlite:///" + str(root / "newsletter.db"))
    try:
        with database.engine.connect() as conn:
            return {r.address: (r.status, r.last_error) for r in conn.execute(
                sa.select(db.recipients.c.address, db.deliveries.c.status,
                          db.deliveries.c.last_error)
                .join(db.deliveries, db.deliveries.c.recipient_id == db.recipients.c.id))}
    finally:
        database.close()


def test_a_paused_run_keeps_the_last_error_of_rows_it_never_tried(send_project, smtp_server,  # type: ignore[no-untyped-def]
                                                                  monkeypatch) -> None:
    recorder, url = smtp_server()
    monkeypatch.setenv("NEWSLETTER_SMTP_URL", url)
    greylisted = "451 4.7.1 greylisted"
    for address in ("ann@school.example", "bob@school.example", "cat@council.example",
                    "dan@district.example", "shared@council.example"):
        recorder.faults[address] = [greylisted] * 10
    # Retried at once until this run's tries are used up: every one deferred, with its reason.
    first = send("--retry-delay", "0")
    assert first.exit_code == 1, first.output
    before = errors(send_project)
    tries = dict(recorder.attempts)
    assert {status for status, _ in before.values()} == {"deferred"}
    paused = send("--pause-after", "1")          # the first refusal pauses the run
    assert paused.exit_code == 1 and "paused after 1 failures in a row" in paused.output
    after = errors(send_project)
    tried = [a for a in after if recorder.attempts[a] > tries[a]]
    assert len(tried) == 1
    for address, (status, error) in after.items():
        assert status == "deferred"
        assert greylisted in error, (address, error)   # never "" for the rows not tried


def test_without_a_journal_answers_go_straight_to_the_ledger(send_project, smtp_server,  # type: ignore[no-untyped-def]
                                                             monkeypatch) -> None:
    recorder, url = smtp_server()
    monkeypatch.setenv("NEWSLETTER_SMTP_URL", url)

    def full(self, lines) -> None:  # type: ignore[no-untyped-def]
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(AnswerJournal, "_write", full)
    result = send()
    assert result.exit_code == 0, result.output
    assert "send: cannot write the journal in" in result.output
    assert "(No space left on device); answers go straight to the ledger" in result.output
    assert {status for status, _ in errors(send_project).values()} == {"sent"}
    assert len(recorder.messages) == 5


def test_a_journal_folder_that_cannot_be_made_is_no_reason_to_stop(send_project, smtp_server,  # type: ignore[no-untyped-def]
                                                                   monkeypatch) -> None:
    recorder, url = smtp_server()
    monkeypatch.setenv("NEWSLETTER_SMTP_URL", url)
    (send_project / "send-journal").write_text("a file where the folder would go\n")
    result = send()
    assert result.exit_code == 0, result.output
    assert "send: cannot write the journal in" in result.output
    assert "answers go straight to the ledger instead" in result.output
    assert "Traceback" not in result.output
    assert {status for status, _ in errors(send_project).values()} == {"sent"}
    assert len(recorder.messages) == 5
