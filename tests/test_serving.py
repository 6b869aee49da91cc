"""Listening sockets shared by the preview and the tracker (newsletter/serving.py)."""

from __future__ import annotations

import os

import pytest

from newsletter import serving
from newsletter.errors import NewsletterError


def test_the_first_free_port_is_taken() -> None:
    taken = serving.listen("127.0.0.1", [0])
    busy = taken.getsockname()[1]
    try:
        sock = serving.listen("127.0.0.1", [busy, 0])
        try:
            assert sock.getsockname()[1] not in (busy, 0)
            assert serving.url_for(sock) == f"http://127.0.0.1:{sock.getsockname()[1]}/"
        finally:
            sock.close()
    finally:
        taken.close()


def test_a_taken_port_names_who_holds_it() -> None:
    taken = serving.listen("127.0.0.1", [0])
    port = taken.getsockname()[1]
    try:
        with pytest.raises(serving.AddressInUse) as caught:
            serving.probe("127.0.0.1", port)
    finally:
        taken.close()
    assert caught.value.holder is not None and caught.value.holder[0] == os.getpid()


def test_an_address_of_another_machine_is_a_message() -> None:
    with pytest.raises(NewsletterError) as caught:
        serving.probe("192.0.2.1", 8025)        # TEST-NET: not an address of this machine
    assert caught.value.message.startswith("cannot listen on 192.0.2.1:8025: ")
    assert caught.value.hint.startswith("check --host")


def test_track_serve_probes_the_same_way(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from click.testing import CliRunner

    from newsletter.cli import main

    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["track", "serve", "--host", "192.0.2.1", "--no-journal",
                                       "--db", str(tmp_path / "t.db"), "--create-db"])
    assert result.exit_code == 1
    assert "cannot listen on 192.0.2.1:8025: " in result.output
    assert "hint: check --host" in result.output
    assert "Traceback" not in result.output


def test_loopback_hosts_only_unless_listening_everywhere() -> None:
    assert serving.allowed_hosts("127.0.0.1") == [*serving.LOOPBACK_NAMES, "127.0.0.1"]
    assert serving.allowed_hosts("::1")[-1] == "[::1]"
    assert serving.allowed_hosts("0.0.0.0") == ["*"]
    assert serving.allowed_hosts("::") == ["*"]
