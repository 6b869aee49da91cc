#!/usr/bin/env bash
# `make demo`: the main job on embedded defaults (SQLite, the Maildir adapter).
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== 1. Check and build the sample issue"
newsletter check issues/2026-spring.yaml
newsletter build issues/2026-spring.yaml
echo
echo "   Open the email in a browser:  newsletter build issues/2026-spring.yaml --open"
echo "   Preview while you edit (live reload):  newsletter preview issues/2026-spring.yaml"
echo

echo "== 2. Send the sample issue to the sample lists (Maildir adapter: nothing leaves this machine)"
newsletter audiences check
newsletter send 2026-spring --yes \
  --to kscmp --to kmsab --to kent-county-council --to medway-council --to kent-police \
  --to kent-fire-rescue --to district-councils --to health-partners \
  --to counter-terrorism-policing
echo
echo "   The messages are in $(pwd)/maildir/new ($(ls maildir/new | wc -l) files): open the"
echo "   folder with any Maildir reader (e.g. mutt -f maildir) or read one with: ls maildir/new"
echo "   Running the demo again resumes the same send: nobody gets a second copy."
echo

echo "== 3. The public side and the report: the tracker serves the web version, its images and"
echo "      the archive; a view, a download and a scanner's visit are counted"
# A private tracker on a free port stands in for the public one the links point at
# (http://127.0.0.1:8025 by default): a partner's reader opens the copy of the web version
# reshared in the KSCMP newsletter (its outlet link, from `newsletter share`) and its images
# load from the tracker (published with the issue by send), the archive lists the issue; a
# person clicks a download link in the email and a security scanner, with an agent of its
# own, sends HEAD to the same link, which the report counts apart. (The email's own "view in
# browser" seconds after delivery would be taken for a mail gateway's check: docs/tracking.md.)
port=$(python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
newsletter track serve --port "$port" 2>/dev/null &
tracker=$!
trap 'kill -TERM "$tracker" 2>/dev/null || true' EXIT   # never left running, whatever happens
python - "$port" <<'PY'
import email, email.policy, http.client, json, pathlib, re, socket, sys, time
port = int(sys.argv[1])
for _ in range(200):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        break
    except OSError:
        time.sleep(0.05)
message = email.message_from_bytes(sorted(pathlib.Path("maildir/new").iterdir())[0].read_bytes(),
                                   policy=email.policy.default)
text = message.get_body(("plain",)).get_content()
# the first tracked link to a download
kinds = {link["id"]: link["kind"] for link in
         json.loads(pathlib.Path("build/2026-spring/links.json").read_text())["links"]}
paths = re.findall(r"https?://[^/\s]+(/c/[A-Za-z0-9_.-]+)", text)
# tokens are opaque: only the project's key opens them (as the tracker does)
from newsletter.db import open_db
from newsletter.tracking.tokens import signer_for
database = open_db("sqlite:///" + str(pathlib.Path("newsletter.db").resolve()))
signer = signer_for(database)
database.close()
path = next(p for p in paths if kinds.get(signer.verify(p[3:], "c").link) == "download")
browser = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Firefox/140.0"
scanner = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/126.0 Safari/537.36"


def fetch(method, path, agent=browser):
    http_conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    http_conn.request(method, path, headers={"User-Agent": agent})
    reply = http_conn.getresponse()
    body = reply.read()
    http_conn.close()
    return reply, body


# a partner's reader opening the reshared web version and one of its images, the archive
web, page = fetch("GET", "/v/2026-spring/kscmp-newsletter")
print(f"   GET /v/2026-spring/kscmp-newsletter -> {web.status} {web.getheader('Content-Type')} "
      "(the web version, as reshared in the KSCMP newsletter)")
image = re.search(r'<img[^>]*src="https?://[^/"]+(/a/[^"]+)"', page.decode()).group(1)
reply, data = fetch("GET", image)
print(f"   GET {image[:24]}... -> {reply.status} {reply.getheader('Content-Type')}, "
      f"{len(data)} bytes (an image of the web version, published with the issue)")
reply, archive = fetch("GET", "/")
listed = archive.decode().count("<li>")
print(f"   GET / -> {reply.status}: the archive lists {listed} issue(s); /feed.xml is its feed")
# a click on a download, and a scanner's HEAD on the same link
for method, agent in (("GET", browser), ("HEAD", scanner)):
    reply, _ = fetch(method, path, agent)
    print(f"   {method} {path[:24]}... -> {reply.status} {reply.getheader('Location')}")
PY
kill -TERM "$tracker"
wait "$tracker" || true
echo
newsletter report 2026-spring
newsletter report 2026-spring --format html --output build/2026-spring/report.html
echo
echo "   The report with charts: $(pwd)/build/2026-spring/report.html"
echo "   Other views: newsletter report 2026-spring --by list | --by day | --format json"
echo "   Start the tracker the links in the sent messages point at:"
echo "       newsletter track serve            # http://127.0.0.1:8025 (NEWSLETTER_TRACKING_URL)"
echo "   Then the web version is http://127.0.0.1:8025/v/2026-spring and the archive of every"
echo "   sent issue is http://127.0.0.1:8025/ (its Atom feed: http://127.0.0.1:8025/feed.xml)."
echo "   Before a real send: newsletter doctor 2026-spring --adapter smtp (docs/deploy.md)"
