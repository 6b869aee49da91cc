"""The Postmark adapter against a fake Postmark that answers as Postmark documents."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fake_providers import HREF_RE, URL_RE, Postmark, PostmarkStream
from helpers import (
    SEND_ADDRESSES,
    adapter,
    ledger_rows,
    make_built,
    messages,
    postmark_env,
    prepare_send,
    run_send,
)

from newsletter.adapters.http import HttpAdapter
from newsletter.adapters.postmark import ENVELOPE, PostmarkAdapter
from newsletter.errors import ConfigurationError


@pytest.fixture
def quick_confirm(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(HttpAdapter, "confirm_waits", (0.1, 0.1))


def sent_links(request: dict) -> list[str]:
    return HREF_RE.findall(request["HtmlBody"]) + URL_RE.findall(request["TextBody"])


def test_each_message_turns_postmarks_tracking_off_and_keeps_our_unsubscribe(  # type: ignore[no-untyped-def]
        send_project: Path, http_server) -> None:
    fake = Postmark()
    fake.track_links = "HtmlAndText"              # the server's setting; ours wins per message
    outcome = run_send(send_project, postmark_env(http_server(fake.app())), "postmark")
    assert outcome.complete and set(fake.recipients) == SEND_ADDRESSES
    assert fake.sends == 1                         # one batch for all five
    for accepted in fake.accepted:
        request = accepted.request
        assert (request["TrackLinks"], request["TrackOpens"]) == ("None", False)
        assert request["MessageStream"] == "newsletter"
        assert accepted.links() == sent_links(request)
        assert accepted.delivered["List-Unsubscribe"].startswith("<http://127.0.0.1:8025/u/")
        assert "pstmrk" not in accepted.html


def test_our_list_headers_reach_postmark(send_project: Path, http_server) -> None:  # type: ignore[no-untyped-def]
    fake = Postmark()
    run_send(send_project, postmark_env(http_server(fake.app())), "postmark")
    headers = {h["Name"]: h["Value"] for h in fake.accepted[0].request["Headers"]}
    assert headers["Message-ID"].startswith("<2026-spring.")
    assert headers["List-Id"] == ("Kent and Medway Prevent Partner Newsletter "
                                  "<prevent-newsletter.example.org>")
    assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert (headers["Precedence"], headers["Auto-Submitted"],
            headers["Content-Language"]) == ("bulk", "auto-generated", "en-GB")
    assert "X-Newsletter-Test" not in headers


def test_a_test_copy_says_so_to_postmark(send_project: Path, http_server) -> None:  # type: ignore[no-untyped-def]
    fake = Postmark()
    postmark = adapter("postmark", send_project, postmark_env(http_server(fake.app())))
    (outcome,) = postmark.send_batch(messages(send_project, make_built(), ["ed@example.org"],
                                              test=True))
    assert outcome.status == "sent"
    assert fake.accepted[0].delivered["X-Newsletter-Test"] == "yes"


def test_no_stream_set_lists_the_servers_broadcast_streams(send_project: Path,  # type: ignore[no-untyped-def]
                                                           http_server) -> None:
    fake = Postmark()
    with pytest.raises(ConfigurationError) as info:
        prepare_send(send_project, postmark_env(http_server(fake.app()), stream=""), "postmark")
    assert info.value.message.startswith("POSTMARK_MESSAGE_STREAM is not set")
    assert "'newsletter' (Partner newsletter)" in info.value.hint
    assert "export POSTMARK_MESSAGE_STREAM=newsletter" in info.value.hint
    assert fake.sends == 0


@pytest.mark.parametrize(("stream", "words"), [
    ("broadcast", "has no message stream 'broadcast'"),
    ("outbound", "is a Transactional stream"),
    ("old", "is archived"),
    ("managed", "Postmark manages unsubscribes on the stream 'managed'"),
])
def test_a_stream_that_would_misbehave_is_refused_before_sending(  # type: ignore[no-untyped-def]
        send_project: Path, http_server, stream, words) -> None:
    fake = Postmark(streams=[
        PostmarkStream("outbound", "Transactional", "Default Transactional Stream", "None"),
        PostmarkStream("newsletter", name="Partner newsletter"),
        PostmarkStream("old", name="Old newsletter", archived=True),
        PostmarkStream("managed", name="Managed", unsubscribe="Postmark")])
    with pytest.raises(ConfigurationError) as info:
        prepare_send(send_project, postmark_env(http_server(fake.app()), stream=stream),
                     "postmark")
    assert words in info.value.message
    assert "POSTMARK_MESSAGE_STREAM" in info.value.message + info.value.hint
    assert fake.sends == 0


def test_server_open_tracking_is_refused_before_sending(send_project: Path,  # type: ignore[no-untyped-def]
                                                        http_server) -> None:
    fake = Postmark()
    fake.track_opens = True
    with pytest.raises(ConfigurationError) as info:
        prepare_send(send_project, postmark_env(http_server(fake.app())), "postmark")
    assert "open tracking is on for this Postmark server" in info.value.message
    assert "Open tracking" in info.value.hint


def test_accepted_but_delayed_is_sent_not_resent(send_project: Path, http_server) -> None:  # type: ignore[no-untyped-def]
    fake = Postmark()
    fake.delayed = {"ann@school.example", "dan@district.example"}
    outcome = run_send(send_project, postmark_env(http_server(fake.app())), "postmark")
    assert outcome.complete and fake.sends == 1
    assert sorted(fake.recipients) == sorted(SEND_ADDRESSES)
    rows = ledger_rows(send_project)
    assert rows["ann@school.example"]["provider_message_id"]


def test_recipient_codes_fail_only_those_recipients(send_project: Path, http_server) -> None:  # type: ignore[no-untyped-def]
    fake = Postmark()
    fake.inactive = {"bob@school.example"}
    fake.invalid = {"cat@council.example"}
    url = http_server(fake.app())
    outcome = run_send(send_project, postmark_env(url), "postmark")
    # A refused address is a hard bounce: its row fails and the address is suppressed at once.
    assert outcome.counts["sent"] == 3 and outcome.counts["suppressed"] == 2
    problems = {address: error for address, _, error in outcome.bounced}
    assert problems["bob@school.example"].startswith("Postmark error 406:")
    assert problems["cat@council.example"].startswith("Postmark error 300: Invalid 'To'")
    postmark = adapter("postmark", send_project, postmark_env(url))
    refused = postmark.send_batch(messages(send_project, make_built(),
                                           ["bob@school.example", "cat@council.example"]))
    assert [o.recipient_problem for o in refused] == [True, True]


def test_an_unverified_sender_stops_the_run_and_fails_nobody(send_project: Path,  # type: ignore[no-untyped-def]
                                                             http_server) -> None:
    fake = Postmark(senders=("elsewhere.example",))
    outcome = run_send(send_project, postmark_env(http_server(fake.app())), "postmark")
    assert isinstance(outcome.stopped_by, ConfigurationError)
    assert "Invalid 'From' address: 'prevent-team@example.org' is not a verified sender " \
        "signature." in outcome.stopped_by.message
    assert "sender: email:" in outcome.stopped_by.hint
    assert outcome.counts["pending"] == 5 and outcome.counts["failed"] == 0


def test_a_stop_part_way_keeps_what_postmark_accepted(send_project: Path, http_server) -> None:  # type: ignore[no-untyped-def]
    fake = Postmark(senders=("example.org", "school.example"))
    fake.pending = True               # an account pending approval sends within its domains
    outcome = run_send(send_project, postmark_env(http_server(fake.app())), "postmark")
    assert isinstance(outcome.stopped_by, ConfigurationError)
    assert "error 412" in outcome.stopped_by.message
    assert outcome.counts["sent"] == 2 and outcome.counts["pending"] == 3
    assert outcome.counts["failed"] == 0
    assert sorted(fake.recipients) == ["ann@school.example", "bob@school.example"]


@pytest.mark.parametrize("body", [
    {"ErrorCode": 405, "Message": "You have run out of credits."},
    {"ErrorCode": 300, "Message": "Invalid 'To' address: 'ann@school.example'."},
    {"ErrorCode": 1235, "Message": "The message stream 'newsletter' does not exist on this "
     "server."},
])
def test_a_whole_batch_422_stops_the_run_and_fails_nobody(send_project: Path, http_server,  # type: ignore[no-untyped-def]
                                                          body) -> None:
    fake = Postmark()
    fake.script = [(422, {}, body)]
    outcome = run_send(send_project, postmark_env(http_server(fake.app())), "postmark")
    assert isinstance(outcome.stopped_by, ConfigurationError)
    assert body["Message"] in outcome.stopped_by.message
    assert outcome.counts["pending"] == 5 and outcome.counts["failed"] == 0


def test_batches_stay_under_the_size_cap(send_project: Path, http_server,  # type: ignore[no-untyped-def]
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    fake = Postmark()
    postmark = adapter("postmark", send_project, postmark_env(http_server(fake.app())))
    batch = messages(send_project, make_built(), [f"r{i}@school.example" for i in range(5)])
    one = len(json.dumps(postmark.payload(batch[0], "0" * 16), ensure_ascii=False).encode())
    cap = ENVELOPE + 2 * (one + 1)                      # room for two messages a batch
    monkeypatch.setattr(PostmarkAdapter, "max_batch_bytes", cap)
    assert [o.status for o in postmark.send_batch(batch)] == ["sent"] * 5
    assert fake.sends == 3 and max(fake.batch_sizes) <= cap
    assert PostmarkAdapter.max_batch == 500
    monkeypatch.undo()
    assert PostmarkAdapter.max_batch_bytes == 50_000_000


def test_a_lost_batch_answer_is_looked_up_not_resent(send_project: Path, http_server,  # type: ignore[no-untyped-def]
                                                     quick_confirm) -> None:
    fake = Postmark()
    fake.slow, fake.slow_seconds = 1, 1.0
    outcome = run_send(send_project, postmark_env(http_server(fake.app())), "postmark",
                       timeout=0.3)
    assert outcome.complete and fake.sends == 1
    assert sorted(fake.recipients) == sorted(SEND_ADDRESSES)
    searches = [p for p in fake.paths("GET") if p.startswith("/messages/outbound?")]
    assert searches and "metadata_newsletter_batch=" in searches[0]
    rows = ledger_rows(send_project)
    assert {r["provider_message_id"] for r in rows.values()} == \
        {a.provider_id for a in fake.accepted}
    assert outcome.possible_repeats == 0


def test_a_lost_answer_postmark_has_no_record_of_is_resent_marked_unknown(  # type: ignore[no-untyped-def]
        send_project: Path, http_server, quick_confirm) -> None:
    fake = Postmark()
    fake.slow, fake.slow_seconds, fake.search_hidden = 1, 1.0, 100
    postmark = adapter("postmark", send_project, postmark_env(http_server(fake.app())),
                       timeout=0.3)
    outcomes = postmark.send_batch(messages(send_project, make_built(),
                                            ["ann@school.example", "bob@school.example"]))
    assert [o.status for o in outcomes] == ["unknown", "unknown"]
    assert "had no record of it" in outcomes[0].error
    assert "sent again with the same Message-ID, so a second copy is possible" in \
        outcomes[0].error


def test_the_cli_shows_the_refusal_with_its_hint(send_project: Path, http_server,  # type: ignore[no-untyped-def]
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from newsletter.cli import main

    fake = Postmark()
    for name, value in postmark_env(http_server(fake.app()), stream="").items():
        monkeypatch.setenv(name, value)
    result = CliRunner().invoke(main, ["send", "2026-spring", "--to", "schools",
                                       "--adapter", "postmark", "--yes"])
    assert result.exit_code == 1
    assert "POSTMARK_MESSAGE_STREAM is not set" in result.output
    assert "hint: this server's Broadcasts streams: 'newsletter' (Partner newsletter)" in \
        result.output
    assert "Traceback" not in result.output and fake.sends == 0
