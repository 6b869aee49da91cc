"""Redirects per second and p99 latency of the tracker under wrk, beside nginx answering a 302.

    .venv/bin/python bench/bench_tracker.py [--duration 10] [--connections 64] [--db URL]

Starts a private nginx (its own config in a temp dir, worker_processes 1, access log off)
answering a fixed 302 on 127.0.0.1, then `newsletter track serve` (one worker) on a fresh SQLite
database (or --db, e.g. a postgresql:// URL): granian with its durable journal (every click
written to a file before the 302), granian without it (--no-journal: clicks wait in memory),
and whatever else --servers names; runs wrk against each with the same settings; stops each
tracker with SIGTERM and counts the clicks it stored against the redirects wrk saw.

Then the crash run: wrk against the journaled tracker, SIGKILL of the tracker and its workers
halfway, a restart on the same database and journal, and the clicks stored against the 302s wrk
received (stored may exceed them by the requests in flight at the kill, at most one per
connection).
Aims: at least 30% of nginx's rate and p99 under 10 ms with every click durable; every click
answered stored after SIGKILL.
Needs wrk and nginx (scripts/install-bench-deps.sh).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa

from newsletter import db
from newsletter.tracking.tokens import signer_for


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, limit: float = 30.0) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing answered on port {port}")


def wrk(url: str, duration: int, connections: int, threads: int) -> dict:
    return parse_wrk(subprocess.run(["wrk", f"-t{threads}", f"-c{connections}",
                                     f"-d{duration}s", "--latency", url],
                                    check=True, capture_output=True, text=True).stdout)


def parse_wrk(out: str) -> dict:
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    total = int(re.search(r"(\d+) requests in", out).group(1))
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors:.*", out)
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)\b", out)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[p99.group(2)]
    return {"rps": rps, "total": total, "bad": int(bad.group(1)) if bad else 0,
            "p99_ms": float(p99.group(1)) * scale, "errors": errors.group(0) if errors else "",
            "raw": out}


def seed(url: str) -> str:
    database = db.open_db(url)
    try:
        with database.engine.begin() as conn:
            conn.execute(db.issues.insert().values(
                slug="bench", subject="Bench", tracking="aggregate", opens=False,
                created_at=db.now(), updated_at=db.now()))
            conn.execute(db.links.insert().values(issue="bench", link_id="a1", kind="article",
                                                  url="https://example.org/article"))
        return signer_for(database).click("bench", "a1", list_key="partners")
    finally:
        database.close()


def stored_clicks(url: str) -> int:
    database = db.open_db(url)
    try:
        with database.engine.connect() as conn:
            return conn.execute(sa.select(sa.func.count()).select_from(db.events)
                                .where(db.events.c.issue == "bench")).scalar()
    finally:
        database.close()


NGINX_CONF = """
worker_processes 1;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    server {{
        listen 127.0.0.1:{port};
        location / {{ return 302 https://example.org/article; }}
    }}
}}
"""


def cpu_seconds(session: int) -> float:
    """User and system CPU time of every process in the session ``session`` leads."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[3]) == session:          # the session id
            total += int(fields[11]) + int(fields[12])   # utime, stime
    return total / ticks


def start_tracker(newsletter: str, url: str, port: int, tmp: str, server: str, workers: int,
                  journal: bool) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "NEWSLETTER_DB"}
    command = [newsletter, "track", "serve", "--port", str(port), "--db", url,
               "--server", server, "--workers", str(workers),
               "--journal", str(Path(tmp) / "journal")]
    if not journal:
        command.append("--no-journal")
    tracker = subprocess.Popen(command, cwd=tmp, env=env, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    wait_for_port(port)
    return tracker


def healthy(port: int, limit: float = 300.0) -> None:
    """Wait until the tracker says nothing waits to be stored."""
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:
                if r.read() == b"ok 0\n":
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    raise SystemExit("the restarted tracker never reported an empty backlog")


def fresh(args: argparse.Namespace, tmp: str, name: str) -> tuple[str, str]:
    """A database URL with no events, and a click token for it."""
    if args.db:
        database = db.open_db(args.db)
        with database.engine.begin() as conn:
            conn.execute(db.events.delete())
        database.close()
        return args.db, seed_token(args.db)
    url = "sqlite:///" + str(Path(tmp) / f"{name}.db")
    return url, seed(url)


def seed_token(url: str) -> str:
    database = db.open_db(url)
    try:
        return signer_for(database).click("bench", "a1", list_key="partners")
    finally:
        database.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--db", default="",
                        help="database URL (default: a fresh SQLite file per server); its "
                        "events are deleted before each run")
    parser.add_argument("--servers", default="granian,granian-no-journal",
                        help="comma-separated: granian, granian-no-journal, uvicorn, "
                        "uvicorn-no-journal")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--no-crash", action="store_true", help="skip the SIGKILL run")
    args = parser.parse_args()
    for tool in ("wrk", "nginx"):
        if not shutil.which(tool) and not Path(f"/usr/sbin/{tool}").exists():
            raise SystemExit(f"{tool} is not installed: bash scripts/install-bench-deps.sh")
    newsletter = shutil.which("newsletter") or str(Path(sys.executable).parent / "newsletter")
    results: dict[str, dict] = {}
    stored: dict[str, int] = {}
    with tempfile.TemporaryDirectory() as tmp:
        base = args.db or "sqlite:///" + str(Path(tmp) / "nginx.db")
        token = seed(base) if not args.db else seed_token(base)
        # nginx first: the reference, on the same machine, in the same run
        nginx_port = free_port()
        conf = Path(tmp) / "nginx.conf"
        conf.write_text(NGINX_CONF.format(tmp=tmp, port=nginx_port))
        nginx = subprocess.Popen([shutil.which("nginx") or "/usr/sbin/nginx", "-c", str(conf),
                                  "-p", tmp, "-e", f"{tmp}/nginx-error.log"],
                                 start_new_session=True)
        try:
            wait_for_port(nginx_port)
            wrk(f"http://127.0.0.1:{nginx_port}/c/{token}", 2, args.connections, args.threads)
            before = cpu_seconds(nginx.pid)
            results["nginx"] = wrk(f"http://127.0.0.1:{nginx_port}/c/{token}", args.duration,
                                   args.connections, args.threads)
            results["nginx"]["cpu"] = cpu_seconds(nginx.pid) - before
        finally:
            nginx.send_signal(signal.SIGQUIT)
            nginx.wait(timeout=30)
        for name in args.servers.split(","):
            server, _, rest = name.partition("-")
            url, token = fresh(args, tmp, name)
            port = free_port()
            tracker = start_tracker(newsletter, url, port, tmp, server, args.workers,
                                    journal=rest != "no-journal")
            try:
                time.sleep(0.5)
                before = cpu_seconds(tracker.pid)
                results[name] = wrk(f"http://127.0.0.1:{port}/c/{token}", args.duration,
                                    args.connections, args.threads)
                results[name]["cpu"] = cpu_seconds(tracker.pid) - before
            finally:
                tracker.send_signal(signal.SIGTERM)
                tracker.wait(timeout=120)
            stored[name] = stored_clicks(url)
        crash = None if args.no_crash else crash_run(args, newsletter, tmp)
    n = results["nginx"]
    print(f"wrk -t{args.threads} -c{args.connections} -d{args.duration}s --latency on 127.0.0.1; "
          f"{os.cpu_count()} CPUs; tracker workers {args.workers}; database "
          f"{(args.db or 'sqlite').split(':')[0]}")
    print(f"load average at the end {os.getloadavg()[0]:.1f} (other work on the machine "
          "takes CPU from every server alike)")
    print(f"{'':28} {'requests/s':>11} {'% nginx':>8} {'p99 ms':>8} {'CPU µs/req':>10} "
          f"{'redirects':>10} {'stored':>10}")
    for name, r in results.items():
        redirects = r["total"] - r["bad"]
        kept = stored.get(name)
        # CPU time of the server's processes per request: what it costs, whatever else runs
        per_request = r["cpu"] / max(r["total"], 1) * 1e6
        print(f"{name if name == 'nginx' else 'tracker/' + name:28} {r['rps']:>11,.0f} "
              f"{r['rps'] / n['rps'] * 100:>7.0f}% {r['p99_ms']:>8.2f} {per_request:>10.1f} "
              f"{redirects:>10,} {'' if kept is None else f'{kept:,}':>10} {r['errors']}")
    for name, kept in stored.items():
        redirects = results[name]["total"] - results[name]["bad"]
        verdict = "every click stored" if kept >= redirects else f"{redirects - kept} MISSING"
        print(f"{name}: {verdict} (stored can exceed wrk's count: wrk does not count requests "
              "in flight when it stops)")
    if crash is not None:
        answered, before, after = crash
        verdict = ("every click answered stored" if after >= answered
                   else f"{answered - after} ANSWERED BUT LOST")
        print(f"SIGKILL halfway through wrk (journal on): {answered:,} 302s received by wrk, "
              f"{before:,} stored at the kill, {after:,} stored after the restart: {verdict} "
              f"({after - answered} in flight at the kill; at most {args.connections})")
    token_costs()
    return 0


def crash_run(args: argparse.Namespace, newsletter: str, tmp: str) -> tuple[int, int, int]:
    """wrk against the journaled tracker, SIGKILL halfway, restart: (answered, stored before
    the restart, stored after it)."""
    url, token = fresh(args, tmp, "crash")
    port = free_port()
    tracker = start_tracker(newsletter, url, port, tmp, "granian", args.workers, journal=True)
    load = subprocess.Popen(["wrk", f"-t{args.threads}", f"-c{args.connections}",
                             f"-d{args.duration}s", "--latency",
                             f"http://127.0.0.1:{port}/c/{token}"],
                            stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(args.duration / 2)
        os.killpg(tracker.pid, signal.SIGKILL)
        tracker.wait(timeout=30)
        out, _ = load.communicate(timeout=args.duration * 4 + 30)
    finally:
        if load.poll() is None:
            load.kill()
    total = int(re.search(r"(\d+) requests in", out).group(1))
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    answered = total - (int(bad.group(1)) if bad else 0)
    before = stored_clicks(url)
    port = free_port()
    again = start_tracker(newsletter, url, port, tmp, "granian", args.workers, journal=True)
    try:
        healthy(port)
    finally:
        again.send_signal(signal.SIGTERM)
        again.wait(timeout=120)
    return answered, before, stored_clicks(url)


def token_costs(count: int = 20_000) -> None:
    """Opening a token the tracker has not seen (wrk repeats one, which the tracker caches):
    the encrypted tokens beside the signed ones of the old form, in the same run."""
    import base64
    import hashlib
    import hmac

    from newsletter.tracking.tokens import Signer

    signer = Signer({"k1": b"bench secret"}, "k1")
    new = [signer.click("2026-spring", "abcdefgh", pseudonym=f"p{i:015d}")
           for i in range(count)]

    def old_form(i: int) -> str:
        payload = f"k1\x1fc\x1f2026-spring\x1fabcdefgh\x1fr:p{i:015d}".encode()
        mac = hmac.new(b"bench secret", payload, hashlib.sha256).digest()[:12]
        return (base64.urlsafe_b64encode(payload).rstrip(b"=").decode() + "."
                + base64.urlsafe_b64encode(mac).rstrip(b"=").decode())

    old = [old_form(i) for i in range(count)]
    best = {"encrypted (AES-SIV)": float("inf"), "old form (HMAC)": float("inf")}
    for _ in range(5):      # alternating rounds, best of each: a busy machine only adds time
        for name, tokens in (("encrypted (AES-SIV)", new), ("old form (HMAC)", old)):
            start = time.perf_counter()
            for token in tokens:
                signer.verify(token, "c")
            best[name] = min(best[name], (time.perf_counter() - start) / count * 1e6)
    print(f"opening {count:,} different tokens (one core, no cache; best of 5), µs per token:")
    for name, tokens in (("encrypted (AES-SIV)", new), ("old form (HMAC)", old)):
        print(f"  {name:20} {best[name]:6.2f}   ({len(tokens[0])} characters)")


if __name__ == "__main__":
    sys.exit(main())
