"""The tracker's journal: every hit on disk before it is answered, stored after any crash.

SQLite and PostgreSQL. "Dead" processes are real ones killed with SIGKILL, so the locks and
half-written files are those a crash leaves.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import sqlalchemy as sa

from newsletter import db
from newsletter.journal import Journal
from newsletter.tracking.events import JOURNAL_FIELDS, EventWriter, Hit, import_spill

T = 1_780_000_000.0


def journal_for(database, folder: Path, **options) -> Journal:  # type: ignore[no-untyped-def]
    journal = Journal(folder, db.database_id(database), JOURNAL_FIELDS, **options)
    journal.open()
    return journal


def hit(i: int) -> Hit:
    return Hit(at=T + 3600 + i, issue="spring", kind="click", link_id="a1", pseudonym="p1",
               user_agent="Mozilla/5.0", ip_hash="00ff", reasons=[])


def stored_times(database) -> list[float]:  # type: ignore[no-untyped-def]
    with database.engine.connect() as conn:
        return [row[0] - T - 3600 for row in conn.execute(
            sa.select(db.events.c.at).order_by(db.events.c.at))]


def segments(folder: Path) -> list[Path]:
    return sorted(folder.glob("hits-*.jsonl"))


def positions(database) -> dict[str, int]:  # type: ignore[no-untyped-def]
    with database.engine.connect() as conn:
        return dict(conn.execute(sa.select(db.journal_segments.c.segment,
                                           db.journal_segments.c.position)).all())


def die_after(database, folder: Path, script: str) -> None:  # type: ignore[no-untyped-def]
    """Run ``script`` in a process with a writer ``w`` journaling to ``folder``, then SIGKILL it
    from inside (no atexit, no finally: what a crash leaves)."""
    code = textwrap.dedent(f"""
        import os, signal, sys
        from pathlib import Path
        from newsletter import db
        from newsletter.tracking.events import JOURNAL_FIELDS, EventWriter, Hit
        from newsletter.journal import Journal
        database = db.open_db({database.url!r})
        journal = Journal(Path({str(folder)!r}), db.database_id(database), JOURNAL_FIELDS)
        journal.open()
        w = EventWriter(database, journal=journal)
        def hit(i):
            return Hit(at={T} + 3600 + i, issue="spring", kind="click", link_id="a1",
                       pseudonym="p1", user_agent="Mozilla/5.0", ip_hash="00ff", reasons=[])
    """) + textwrap.dedent(script) + "\nos.kill(os.getpid(), signal.SIGKILL)\n"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == -9, result.stderr


def test_a_hit_is_in_the_journal_before_add_returns(tracking_db, tmp_path) -> None:  # type: ignore[no-untyped-def]
    writer = EventWriter(tracking_db, journal=journal_for(tracking_db, tmp_path))
    writer.add(hit(0))
    [segment] = segments(tmp_path)
    header, line = segment.read_text().splitlines()
    assert json.loads(header)["fields"] == list(JOURNAL_FIELDS)
    assert dict(zip(JOURNAL_FIELDS, json.loads(line), strict=True))["at_us"] == (T + 3600) * 1e6
    assert stored_times(tracking_db) == []
    writer.close()
    assert stored_times(tracking_db) == [0]
    assert segments(tmp_path) == [] and positions(tracking_db) == {}


def test_a_new_writer_stores_what_a_killed_process_left(tracking_db, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    die_after(tracking_db, tmp_path, "for i in range(5): w.add(hit(i))")
    writer = EventWriter(tracking_db, journal=journal_for(tracking_db, tmp_path))
    assert writer.replay() == 5
    assert stored_times(tracking_db) == [0, 1, 2, 3, 4]
    assert len(segments(tmp_path)) == 1  # only the new writer's own segment is left
    assert "stored 5 hit(s) left in the journal by an earlier run" in capsys.readouterr().err
    writer.close()
    assert positions(tracking_db) == {}


def test_replay_starts_where_the_database_left_off(tracking_db, tmp_path) -> None:  # type: ignore[no-untyped-def]
    die_after(tracking_db, tmp_path, """
        for i in range(4): w.add(hit(i))
        w.flush()
        for i in range(4, 10): w.add(hit(i))
    """)
    assert stored_times(tracking_db) == [0, 1, 2, 3]
    writer = EventWriter(tracking_db, journal=journal_for(tracking_db, tmp_path))
    assert writer.replay() == 6
    assert stored_times(tracking_db) == list(range(10))
    writer.close()


def test_a_half_written_last_line_was_never_answered_and_is_left_out(tracking_db, tmp_path) -> None:  # type: ignore[no-untyped-def]
    die_after(tracking_db, tmp_path, "for i in range(3): w.add(hit(i))")
    [segment] = segments(tmp_path)
    with segment.open("ab") as out:
        out.write(b'[1780003603.0, "spring", "cli')  # the write() the kill interrupted
    writer = EventWriter(tracking_db, journal=journal_for(tracking_db, tmp_path))
    assert writer.replay() == 3
    assert stored_times(tracking_db) == [0, 1, 2]
    writer.close()


def test_a_live_process_segments_are_not_taken(tracking_db, tmp_path) -> None:  # type: ignore[no-untyped-def]
    alive = EventWriter(tracking_db, journal=journal_for(tracking_db, tmp_path))
    alive.add(hit(0))
    other = EventWriter(tracking_db, journal=journal_for(tracking_db, tmp_path))
    assert other.replay() == 0
    assert stored_times(tracking_db) == []
    alive.close()
    other.close()
    assert stored_times(tracking_db) == [0]


def test_a_segment_of_another_database_is_left_alone(tracking_db, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    die_after(tracking_db, tmp_path, "w.add(hit(0))")
    [segment] = segments(tmp_path)
    header, rest = segment.read_bytes().split(b"\n", 1)
    other = json.loads(header) | {"database": "0" * 32}
    segment.write_bytes(json.dumps(other).encode() + b"\n" + rest)
    writer = EventWriter(tracking_db, journal=journal_for(tracking_db, tmp_path))
    assert writer.replay() == 0
    assert segment.exists() and stored_times(tracking_db) == []
    assert f"{segment} holds hits for another database" in capsys.readouterr().err
    writer.close()


def test_hits_beyond_the_memory_queue_wait_in_the_file_then_stored(tracking_db, tmp_path) -> None:  # type: ignore[no-untyped-def]
    writer = EventWriter(tracking_db, journal=journal_for(tracking_db, tmp_path), max_queue=3)
    for i in range(10):
        writer.add(hit(i))
    assert len(writer._queue) == 3 and writer.pending == 10
    assert writer.flush() == 10
    assert stored_times(tracking_db) == list(range(10))
    assert writer.pending == 0
    assert len(segments(tmp_path)) == 1  # the full one was stored and deleted; a new one took over
    writer.add(hit(10))
    writer.close()
    assert stored_times(tracking_db) == list(range(11))
    assert segments(tmp_path) == []


def test_full_segments_are_rotated_and_deleted_once_stored(tracking_db, tmp_path) -> None:  # type: ignore[no-untyped-def]
    journal = journal_for(tracking_db, tmp_path, max_segment_bytes=600)
    writer = EventWriter(tracking_db, journal=journal)
    names = set()
    for i in range(20):
        writer.add(hit(i))
        names.add(journal.current.name)
        if i % 4 == 3:
            writer.flush()
    writer.close()
    assert len(names) > 2
    assert stored_times(tracking_db) == list(range(20))
    assert segments(tmp_path) == [] and positions(tracking_db) == {}


def test_a_failing_batch_is_retried_smaller(tracking_db, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    writer = EventWriter(tracking_db, journal=journal_for(tracking_db, tmp_path), max_batch=8)
    real_write = writer._write
    sizes = []

    def too_big(batch, *rest):  # type: ignore[no-untyped-def]
        sizes.append(len(batch))
        if len(batch) > 2:  # e.g. a nearly full disk that takes small transactions only
            raise sa.exc.OperationalError("INSERT", {}, Exception("database or disk is full"))
        return real_write(batch, *rest)

    monkeypatch.setattr(writer, "_write", too_big)
    for i in range(8):
        writer.add(hit(i))
    for _ in range(2):
        with pytest.raises(sa.exc.OperationalError):
            writer.flush()
    assert writer.flush() == 8
    assert sizes[:3] == [8, 4, 2]
    assert stored_times(tracking_db) == list(range(8))
    writer.close()


def test_the_writer_waits_out_an_outage_and_says_so_without_any_value(
        tracking_db, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    writer = EventWriter(tracking_db, journal=journal_for(tracking_db, tmp_path), patience=0,
                         flush_interval=0.01)
    with tracking_db.engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE events RENAME TO events_away"))
    try:
        writer.start()
        writer.add(Hit(at=T, issue="spring", kind="click", link_id="a1", pseudonym="p-secret-9",
                       user_agent="Agent/secret", ip_hash="feedface"))
        wait_for(lambda: writer.failing_since is not None)
        assert (writer.health() or "").startswith("cannot store events for")
    finally:
        with tracking_db.engine.begin() as conn:
            conn.execute(sa.text("ALTER TABLE events_away RENAME TO events"))
    wait_for(lambda: writer.pending == 0)
    writer.close()
    err = capsys.readouterr().err
    assert "tracker: cannot store events yet (" in err
    assert "1 waiting in the journal, retrying in" in err
    assert "tracker: storing events again after" in err
    for secret in ("p-secret-9", "Agent/secret", "feedface", "INSERT"):
        assert secret not in err
    assert writer.health() is None
    assert stored_times(tracking_db) == [-3600]


def wait_for(condition, limit: float = 60.0) -> None:  # type: ignore[no-untyped-def]
    import time

    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_a_journal_that_cannot_be_written_keeps_hits_in_memory_and_says_so(
        tracking_db, tmp_path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    journal = journal_for(tracking_db, tmp_path)
    writer = EventWriter(tracking_db, journal=journal)
    writer.replay()

    def full(line):  # type: ignore[no-untyped-def]
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(journal, "append", full)
    writer.add(hit(0))
    assert "cannot write the journal (No space left on device)" in capsys.readouterr().err
    assert writer.health() == "cannot write the journal: No space left on device"
    assert writer.flush() == 1
    monkeypatch.undo()
    writer.add(hit(1))
    assert writer.health() is None
    writer.close()
    assert stored_times(tracking_db) == [0, 1]


def spill_file(folder: Path, name: str = "events-unsaved-4242-1780000000.jsonl") -> Path:
    path = folder / name
    rows = [{"at": T + 3600 + i, "issue": "spring", "kind": "click", "link_id": "a1",
             "pseudonym": "p1", "list_key": "", "method": "HEAD" if i == 0 else "GET",
             "user_agent": "Mozilla/5.0", "ip_hash": "00ff", "scanner": i == 0,
             "reasons": "head" if i == 0 else ""} for i in range(3)]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_a_spill_file_is_imported_once(tracking_db, tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = spill_file(tmp_path)
    assert import_spill(tracking_db, path) == (3, False)
    assert import_spill(tracking_db, path) == (0, True)
    assert stored_times(tracking_db) == [0, 1, 2]
    with tracking_db.engine.connect() as conn:
        assert conn.execute(sa.select(db.events.c.reasons).order_by(db.events.c.at)
                            ).scalars().first() == "head"


def test_track_import_stores_a_spill_file_once(tracking_db, tmp_path, runner,
                                               monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from newsletter.cli import main

    monkeypatch.chdir(tmp_path)
    path = spill_file(tmp_path)
    first = runner.invoke(main, ["track", "import", str(path), "--db", tracking_db.url])
    again = runner.invoke(main, ["track", "import", str(path), "--db", tracking_db.url])
    assert first.exit_code == 0, first.output
    assert first.output == f"{path}: stored 3 event(s); the file may now be deleted.\n"
    assert again.output == f"{path}: already imported; nothing stored twice.\n"
    assert stored_times(tracking_db) == [0, 1, 2]


def test_start_up_names_spill_files_not_yet_imported(tracking_db, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    from newsletter.cli.track import _name_unsaved_files

    path = spill_file(tmp_path)
    _name_unsaved_files(tracking_db, str(tmp_path))
    err = capsys.readouterr().err
    assert f"Found 1 file(s) of events an older tracker could not store: {path}" in err
    assert "newsletter track import FILE..." in err
    import_spill(tracking_db, path)
    _name_unsaved_files(tracking_db, str(tmp_path))
    assert capsys.readouterr().err == ""


def test_import_refuses_a_missing_database(tmp_path, runner, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from newsletter.cli import main

    monkeypatch.chdir(tmp_path)
    path = spill_file(tmp_path)
    result = runner.invoke(main, ["track", "import", str(path), "--db", str(tmp_path / "no.db")])
    assert result.exit_code == 1
    assert "no database at" in result.output
    assert not (tmp_path / "no.db").exists()


def test_every_field_of_a_hit_survives_the_journal() -> None:
    """Fails when Hit gains a field the hand-written journal line leaves out."""
    import dataclasses

    from newsletter.tracking.events import _journal_line, _journal_parser

    values = {}
    for f in dataclasses.fields(Hit):
        values[f.name] = {"at": T + 0.123456, "reasons": ["head", "no-agent"]}.get(
            f.name, f"{f.name}-\u00e9\t\"x\"")
    hit = Hit(**values)
    again = _journal_parser(JOURNAL_FIELDS)(_journal_line(hit))
    assert again is not None
    assert abs(again.at - hit.at) < 1e-6
    assert dataclasses.replace(again, at=hit.at) == hit
