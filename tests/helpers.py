"""Helpers shared by tests (plain functions and constants; fixtures live in conftest.py)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from email import message_from_bytes, policy
from email.header import decode_header, make_header
from email.message import EmailMessage
from email.utils import getaddresses

# --- reading what was sent --------------------------------------------------------------
# Messages are read back twice: by Python's email package and by Perl's Email::MIME (Debian's
# libemail-mime-perl), an independent implementation of RFC 2047 and MIME.

_PERL_PARSER = r"""
use strict; use warnings;
use Email::MIME; use JSON::PP;
local $/; my $raw = <STDIN>;
my $email = Email::MIME->new($raw);
sub mailboxes {
    my ($name) = @_;
    my $header = $email->header_as_obj($name) or return [];
    return [map { { name => $_->phrase // "", address => $_->address } } $header->addresses];
}
sub text { my $value = $email->header_str($_[0]); return $value // ""; }
my %out = (
    subject => text("Subject"),
    from => mailboxes("From"), to => mailboxes("To"),
    list_id => text("List-Id"), message_id => text("Message-ID"),
    list_unsubscribe => text("List-Unsubscribe"),
    parts => [map { { type => $_->content_type =~ s/;.*//sr, body => $_->body_str } }
              $email->subparts],
);
print JSON::PP->new->utf8->canonical->encode(\%out);
"""


def perl_parse(raw: bytes) -> dict:
    """The message as Perl's Email::MIME reads it: decoded headers, mailboxes and parts."""
    perl = shutil.which("perl")
    assert perl, "perl is missing"
    done = subprocess.run([perl, "-e", _PERL_PARSER], input=raw, capture_output=True,
                          check=False, timeout=60)
    assert done.returncode == 0, done.stderr.decode("utf-8", "replace")
    data = json.loads(done.stdout)
    for part in data["parts"]:
        part["body"] = part["body"].replace("\r\n", "\n")
    return data


def python_parse(raw: bytes) -> EmailMessage:
    """The message as Python's email package reads it (the modern API)."""
    return message_from_bytes(raw, policy=policy.default)  # type: ignore[return-value]


def python_mailboxes(raw: bytes, header: str) -> list[tuple[str, str]]:
    """(display name, address) pairs of ``header``, decoded by RFC 2047's rules.

    Not ``policy.default``'s address parser: before CPython gh-128110 it keeps the space
    between two adjacent encoded-words of a display name, which RFC 2047 6.2 says to drop.
    """
    value = message_from_bytes(raw, policy=policy.compat32)[header]
    return [(str(make_header(decode_header(name))), address)
            for name, address in getaddresses([value])]


# --- line limits ------------------------------------------------------------------------

ENCODED_WORD_RE = re.compile(rb"=\?[^?\s]+\?[bBqQ]\?[^?\s]*\?=")


def line_problems(raw: bytes) -> list[str]:
    """Every place ``raw`` breaks a line limit we promise.

    Header lines at most 78 characters unless the line is one unbreakable item (a long URL);
    encoded-words at most 75 (RFC 2047 2); body lines at most 76 (quoted-printable, RFC 2045
    6.7); every line at most 998 (RFC 5322 2.1.1); CRLF line ends only.
    """
    problems = []
    head, _, body = raw.partition(b"\r\n\r\n")
    if b"\n" in raw.replace(b"\r\n", b""):
        problems.append("a bare LF line end")
    for line in head.split(b"\r\n"):
        value = line if line[:1] in (b" ", b"\t") else line.partition(b":")[2]
        if len(line) > 78 and (len(value.split()) != 1 or ENCODED_WORD_RE.search(value)):
            problems.append(f"header line of {len(line)} characters: {line[:60]!r}...")
        for word in ENCODED_WORD_RE.findall(line):
            if len(word) > 75:
                problems.append(f"encoded-word of {len(word)} characters: {word!r}")
    for line in body.split(b"\r\n"):
        if len(line) > 76:
            problems.append(f"body line of {len(line)} characters: {line[:60]!r}...")
    return problems

MINIMAL_ISSUE = """\
slug: draft
edition: Spring 2027
title: Prevent Partner Newsletter
subject: Spring update
preheader: What is new this season.
date: 2027-03-17
sender:
  name: Kent and Medway Prevent Team
  email: prevent-team@example.org
sections:
  - type: article
    heading: Welcome
    body: |
      Hello partners. Read the [Prevent duty guidance](https://www.example.org/guidance).
footer:
  sender: Kent and Medway Prevent Team
  reason: You are a Prevent partner.
  privacy_url: https://www.example.org/privacy
"""
