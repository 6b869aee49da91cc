"""The bounce mailbox readers against real mailboxes: a Maildir, an mbox, and Dovecot."""

from __future__ import annotations

import mailbox
from pathlib import Path

import pytest
from helpers import BOUNCE_CORPUS, ImapServer, free_port

from newsletter.bounces.mailbox import (
    DONE_KEYWORD,
    ImapMailbox,
    ImapSettings,
    open_mailbox,
)
from newsletter.errors import ConfigurationError, NewsletterError

CORPUS = sorted(BOUNCE_CORPUS.glob("*.eml"))


@pytest.fixture
def folder(imap: ImapServer, request: pytest.FixtureRequest) -> str:
    """A folder of its own for each test, holding the whole corpus."""
    name = imap.new_folder("t" + str(abs(hash(request.node.nodeid)) % 10**9))
    for path in CORPUS:
        imap.append(path.read_bytes(), name)
    return name


def _message_ids(box) -> list[bytes]:  # type: ignore[no-untyped-def]
    return [f.raw for f in box.messages()]


def test_a_maildir_yields_every_message(tmp_path: Path) -> None:
    box = mailbox.Maildir(tmp_path / "Maildir", create=True)
    for path in CORPUS:
        box.add(path.read_bytes())
    with open_mailbox(maildir=tmp_path / "Maildir") as reader:
        got = _message_ids(reader)
    assert sorted(got) == sorted(p.read_bytes() for p in CORPUS)


def test_an_mbox_yields_every_message(tmp_path: Path) -> None:
    box = mailbox.mbox(tmp_path / "bounces.mbox", create=True)
    for path in CORPUS:
        box.add(path.read_bytes())
    box.close()
    with open_mailbox(mbox=tmp_path / "bounces.mbox") as reader:
        got = [f.raw for f in reader.messages()]
    assert len(got) == len(CORPUS)
    assert all(b"Subject:" in raw for raw in got)


def test_imap_yields_every_message_then_marks_them_done(imap: ImapServer, folder: str) -> None:
    with ImapMailbox(imap.url(folder), imap.password, ca_file=imap.ca_file) as reader:
        got = list(reader.messages())
        assert sorted(f.raw.replace(b"\r\n", b"\n") for f in got) == \
            sorted(p.read_bytes() for p in CORPUS)
        for fetched in got:
            reader.mark_done(fetched.key)
    assert all(DONE_KEYWORD.encode() in flags for flags in imap.keywords(folder))
    with ImapMailbox(imap.url(folder), imap.password, ca_file=imap.ca_file) as reader:
        assert list(reader.messages()) == []


def test_imap_reading_leaves_messages_unread(imap: ImapServer, folder: str) -> None:
    with ImapMailbox(imap.url(folder), imap.password, ca_file=imap.ca_file) as reader:
        list(reader.messages())
    assert not any(b"\\Seen" in flags for flags in imap.keywords(folder))


def test_imap_read_only_marks_nothing(imap: ImapServer, folder: str) -> None:
    with ImapMailbox(imap.url(folder), imap.password, ca_file=imap.ca_file,
                     read_only=True) as reader:
        for fetched in reader.messages():
            reader.mark_done(fetched.key)
    assert not any(DONE_KEYWORD.encode() in flags for flags in imap.keywords(folder))


def test_imap_with_starttls(imap: ImapServer, folder: str) -> None:
    url = f"imap://{imap.user}@127.0.0.1:{imap.starttls_port}/{folder}"
    with ImapMailbox(url, imap.password, ca_file=imap.ca_file) as reader:
        assert len(list(reader.messages())) == len(CORPUS)


def test_an_unreachable_imap_server_names_the_setting() -> None:
    port = free_port()
    with pytest.raises(ConfigurationError) as caught:
        ImapMailbox(f"imaps://bounces@127.0.0.1:{port}/INBOX", "pw")
    assert caught.value.message == (
        f"cannot reach the bounce mailbox at 127.0.0.1:{port}: Connection refused")
    assert caught.value.hint == "check the server name and port in NEWSLETTER_BOUNCE_IMAP_URL"


def test_an_untrusted_imap_certificate_names_the_ca_setting(imap: ImapServer) -> None:
    with pytest.raises(ConfigurationError) as caught:
        ImapMailbox(imap.url(), imap.password)
    assert "has a certificate not signed by the system's trusted authorities" in \
        caught.value.message
    assert "NEWSLETTER_BOUNCE_IMAP_CA_FILE" in caught.value.hint


def test_an_unreadable_ca_file_says_so(imap: ImapServer, tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError) as caught:
        ImapMailbox(imap.url(), imap.password, ca_file=str(tmp_path / "missing.pem"))
    assert caught.value.message.startswith(
        "NEWSLETTER_BOUNCE_IMAP_CA_FILE cannot be used as trusted certificates")


def test_imaps_to_a_starttls_port_says_which_port(imap: ImapServer) -> None:
    with pytest.raises(ConfigurationError) as caught:
        ImapMailbox(f"imaps://bounces@127.0.0.1:{imap.starttls_port}/INBOX", imap.password,
                    ca_file=imap.ca_file, timeout=5)
    assert caught.value.message.startswith("cannot start TLS with the bounce mailbox at")
    assert "imaps:// is TLS from the start" in caught.value.hint


def test_a_missing_imap_folder_says_where_it_is_set(imap: ImapServer) -> None:
    with pytest.raises(ConfigurationError) as caught:
        ImapMailbox(imap.url("Nowhere"), imap.password, ca_file=imap.ca_file)
    assert caught.value.message.startswith("the bounce mailbox has no folder 'Nowhere'")
    assert caught.value.hint == ("the folder is the path at the end of "
                                 "NEWSLETTER_BOUNCE_IMAP_URL (default INBOX)")


def test_a_missing_imap_password_names_the_setting() -> None:
    with pytest.raises(ConfigurationError) as caught:
        ImapMailbox("imaps://bounces@127.0.0.1/INBOX", "")
    assert caught.value.message == ("the bounce mailbox password is not set: set the "
                                    "environment variable NEWSLETTER_BOUNCE_IMAP_PASSWORD")


@pytest.mark.parametrize(("url", "message"), [
    ("https://bounces@imap.example.org/", "NEWSLETTER_BOUNCE_IMAP_URL must start with imaps:// "
     "(or imap:// for STARTTLS), not https://"),
    ("imaps:///INBOX", "NEWSLETTER_BOUNCE_IMAP_URL has no server name"),
    ("imaps://imap.example.org/INBOX", "NEWSLETTER_BOUNCE_IMAP_URL has no user name"),
    ("imaps://bounces:pw@imap.example.org/", "NEWSLETTER_BOUNCE_IMAP_URL contains a password; "
     "keep it out of the URL"),
    ("imaps://bounces@imap.example.org:99999/", "NEWSLETTER_BOUNCE_IMAP_URL is not a valid URL: "
     "Port out of range 0-65535"),
])
def test_a_bad_imap_url_says_what_is_wrong(url: str, message: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        ImapSettings.parse(url)
    assert caught.value.message == message


def test_imap_url_defaults() -> None:
    s = ImapSettings.parse("imaps://bounces%40news.example.org@imap.example.org")
    assert (s.host, s.port, s.implicit_tls, s.username, s.folder) == (
        "imap.example.org", 993, True, "bounces@news.example.org", "INBOX")
    assert ImapSettings.parse("imap://u@h/Bounces/2026").port == 143
    assert ImapSettings.parse("imap://u@h/Bounces/2026").folder == "Bounces/2026"


def test_not_a_maildir_says_what_it_needs(tmp_path: Path) -> None:
    with pytest.raises(NewsletterError) as caught:
        open_mailbox(maildir=tmp_path)
    assert caught.value.message == (f"--maildir {tmp_path}: not a Maildir (it needs the folders "
                                    "cur/ and new/)")


def test_a_missing_mbox_says_so(tmp_path: Path) -> None:
    with pytest.raises(NewsletterError) as caught:
        open_mailbox(mbox=tmp_path / "nope")
    assert caught.value.message == f"--mbox {tmp_path / 'nope'}: no such file"


def test_two_mailboxes_at_once_are_refused(tmp_path: Path) -> None:
    with pytest.raises(NewsletterError, match="--maildir cannot be used with --mbox"):
        open_mailbox(maildir=tmp_path, mbox=tmp_path)


def test_no_mailbox_at_all_says_how_to_choose_one() -> None:
    with pytest.raises(ConfigurationError) as caught:
        open_mailbox()
    assert caught.value.message == ("no bounce mailbox to read: give --maildir PATH or --mbox "
                                    "PATH, or set NEWSLETTER_BOUNCE_IMAP_URL")


# Last of the IMAP tests: Dovecot slows every later login from this address after a failed one.
def test_a_wrong_imap_password_names_the_setting(imap: ImapServer) -> None:
    with pytest.raises(ConfigurationError) as caught:
        ImapMailbox(imap.url(), "wrong", ca_file=imap.ca_file)
    assert caught.value.message.startswith(
        "the bounce mailbox at 127.0.0.1 refused the login for bounces")
    assert caught.value.hint == ("check NEWSLETTER_BOUNCE_IMAP_PASSWORD and the user name in "
                                 "NEWSLETTER_BOUNCE_IMAP_URL")
