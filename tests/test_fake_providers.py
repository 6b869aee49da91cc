"""The fake providers refuse what the real ones document refusing.

The adapter tests are only as good as the fakes: a fake that accepted a malformed request
would let a broken adapter pass. Each test sends, by hand, a request a provider refuses.
"""

from __future__ import annotations

import base64
import time

import requests
from fake_providers import Mailgun, MailgunDomain, Postmark, Sendgrid

MIME = (b"From: team@example.org\r\nTo: a@school.example\r\nSubject: hi\r\n"
        b"Message-ID: <m1@example.org>\r\nContent-Type: text/plain\r\n\r\nhello\r\n")


def mailgun_post(url: str, **kwargs) -> requests.Response:  # type: ignore[no-untyped-def]
    return requests.post(f"{url}/v3/mg.example.org/messages.mime", auth=("api", "key-test"),
                         timeout=10, **kwargs)


def test_mailgun_wants_the_message_as_a_file(http_server) -> None:  # type: ignore[no-untyped-def]
    url = http_server(Mailgun().app())
    as_field = mailgun_post(url, files={"to": (None, "a@school.example"),
                                        "message": (None, MIME.decode())})
    assert as_field.status_code == 400
    assert as_field.json() == {"message": "'message' parameter is not a file"}
    as_file = mailgun_post(url, data={"to": "a@school.example"},
                           files={"message": ("m.mime", MIME, "message/rfc822")})
    assert as_file.status_code == 200
    assert as_file.json() == {"id": "<m1@example.org>", "message": "Queued. Thank you."}


def test_mailgun_knows_domains_only_in_their_region(http_server) -> None:  # type: ignore[no-untyped-def]
    url = http_server(Mailgun(domains=[MailgunDomain("mg.example.org", region="eu")]).app())
    answer = mailgun_post(url, data={"to": "a@school.example"},
                          files={"message": ("m.mime", MIME, "message/rfc822")})
    assert answer.status_code == 404 and answer.json() == {"message": "Domain not found"}


def test_mailgun_sandbox_sends_only_to_authorized_recipients(http_server) -> None:  # type: ignore[no-untyped-def]
    url = http_server(Mailgun(domains=[MailgunDomain("mg.example.org", sandbox=True)]).app())
    answer = mailgun_post(url, data={"to": "a@school.example"},
                          files={"message": ("m.mime", MIME, "message/rfc822")})
    assert answer.status_code == 403
    assert "Sandbox subdomains are for test purposes only" in answer.json()["message"]


def postmark_post(url: str, body, **headers) -> requests.Response:  # type: ignore[no-untyped-def]
    return requests.post(f"{url}/email/batch", json=body, timeout=30,
                         headers={"X-Postmark-Server-Token": "server-token",
                                  "Accept": "application/json", **headers})


def one(to: str = "a@school.example", **fields) -> dict:  # type: ignore[no-untyped-def]
    return {"From": "team@example.org", "To": to, "Subject": "s", "TextBody": "t",
            "MessageStream": "newsletter", **fields}


def test_postmark_batch_caps_count_and_size(http_server) -> None:  # type: ignore[no-untyped-def]
    url = http_server(Postmark().app())
    too_many = postmark_post(url, [one()] * 501)
    assert too_many.status_code == 422 and too_many.json()["ErrorCode"] == 410
    big = "x" * 200_000
    too_big = postmark_post(url, [one(HtmlBody=big)] * 251)     # 50.2 MB
    assert too_big.status_code == 413


def test_postmark_answers_each_message_and_knows_its_streams(http_server) -> None:  # type: ignore[no-untyped-def]
    fake = Postmark()
    fake.delayed = {"late@school.example"}
    fake.inactive = {"gone@school.example"}
    url = http_server(fake.app())
    answers = postmark_post(url, [one(), one("late@school.example"), one("gone@school.example"),
                                  one(From="someone@elsewhere.example")]).json()
    assert answers[0]["ErrorCode"] == 0
    assert "ErrorCode" not in answers[1] and answers[1]["Message"].endswith("may be delayed.")
    assert answers[2]["ErrorCode"] == 406
    assert answers[3]["ErrorCode"] == 300 and "'From'" in answers[3]["Message"]
    unknown = postmark_post(url, [one(MessageStream="broadcast")])
    assert unknown.status_code == 422 and "'broadcast'" in unknown.json()["Message"]
    no_accept = requests.post(f"{url}/email/batch", json=[one()], timeout=10,
                              headers={"X-Postmark-Server-Token": "server-token"})
    assert no_accept.status_code == 422


def sendgrid_post(url: str, body: dict) -> requests.Response:
    return requests.post(f"{url}/v3/mail/send", json=body, timeout=10,
                         headers={"Authorization": "Bearer SG.test"})


def sg_message(**fields) -> dict:  # type: ignore[no-untyped-def]
    return {"personalizations": [{"to": [{"email": "a@school.example"}]}],
            "from": {"email": "team@example.org"}, "subject": "s",
            "content": [{"type": "text/plain", "value": "t"},
                        {"type": "text/html", "value": "<p>t</p>"}], **fields}


def test_sendgrid_refuses_reserved_headers_and_html_before_text(http_server) -> None:  # type: ignore[no-untyped-def]
    url = http_server(Sendgrid().app())
    assert sendgrid_post(url, sg_message()).status_code == 202
    reserved = sendgrid_post(url, sg_message(headers={"Reply-To": "x@example.org"}))
    assert reserved.status_code == 400 and reserved.json()["errors"][0]["field"] == "headers"
    backwards = sendgrid_post(url, sg_message(content=[
        {"type": "text/html", "value": "<p>t</p>"}, {"type": "text/plain", "value": "t"}]))
    assert backwards.status_code == 400


def test_sendgrid_tells_an_unverified_sender_from_a_wrong_key(http_server) -> None:  # type: ignore[no-untyped-def]
    url = http_server(Sendgrid().app())
    sender = sendgrid_post(url, sg_message(**{"from": {"email": "x@elsewhere.example"}}))
    assert sender.status_code == 403
    assert "verified Sender Identity" in sender.json()["errors"][0]["message"]
    key = requests.post(f"{url}/v3/mail/send", json=sg_message(), timeout=10,
                        headers={"Authorization": "Bearer wrong"})
    assert key.status_code == 401


def test_sendgrid_429_says_when_in_x_ratelimit_reset(http_server) -> None:  # type: ignore[no-untyped-def]
    fake = Sendgrid()
    fake.script = [fake.rate_limited(5)]
    answer = sendgrid_post(http_server(fake.app()), sg_message())
    assert answer.status_code == 429 and "Retry-After" not in answer.headers
    assert 4 <= int(answer.headers["X-RateLimit-Reset"]) - time.time() <= 6.5


def test_sendgrid_applies_account_tracking_unless_the_request_turns_it_off(http_server) -> None:  # type: ignore[no-untyped-def]
    fake = Sendgrid()
    url = http_server(fake.app())
    link = '<a href="https://tracker.example/c/x">x</a>'
    body = sg_message(content=[{"type": "text/plain", "value": "https://tracker.example/c/x"},
                               {"type": "text/html", "value": link}])
    sendgrid_post(url, body)
    sendgrid_post(url, {**body, "tracking_settings": {
        name: {"enable": False} for name in ("click_tracking", "open_tracking",
                                             "subscription_tracking", "ganalytics")}})
    tracked, untracked = fake.accepted
    assert "https://tracker.example/c/x" not in tracked.links()
    assert "List-Unsubscribe" in tracked.delivered
    assert untracked.links() == ["https://tracker.example/c/x", "https://tracker.example/c/x"]
    assert "List-Unsubscribe" not in untracked.delivered


def test_basic_auth_header_is_what_mailgun_checks(http_server) -> None:  # type: ignore[no-untyped-def]
    url = http_server(Mailgun().app())
    wrong = requests.post(f"{url}/v3/mg.example.org/messages.mime", timeout=10,
                          headers={"Authorization": "Basic "
                                   + base64.b64encode(b"api:nope").decode()},
                          data={"to": "a@school.example"},
                          files={"message": ("m.mime", MIME, "message/rfc822")})
    assert wrong.status_code == 401 and wrong.text == "Forbidden"
