"""Benchmark: `newsletter send` through the smtp adapter into Postfix's smtp-sink.

For each size (10,000 and 100,000 recipients by default) it runs, against one smtp-sink:

- ours: `newsletter send 2026-spring --to bench --adapter smtp --concurrency 4 --yes`, a
  fresh SQLite ledger, the sample issue built once and personalised per recipient;
- Postfix's own load generator: `smtp-source -s 4 -m N -l SIZE`, the same number of messages
  of the same size over the same number of connections.

It prints messages per second for both, our CPU time per recipient (user + system of the
`newsletter` process, everything included: build, plan, ledger, MIME, SMTP) and our peak
memory (ru_maxrss). Aims (issue 4): at least half smtp-source's rate at 4 connections, under
0.3 ms of our CPU per recipient, under 100 MB at 100,000 recipients.

    python bench/bench_send.py                 # 10000 and 100000
    python bench/bench_send.py 2000            # a quick run
    bash scripts/install-bench-deps.sh         # installs postfix (smtp-sink, smtp-source)
"""

from __future__ import annotations

import email
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CONCURRENCY = 4
PROJECT_FILES = ("issues", "templates", "images", "theme.yaml", "newsletter.yaml")


def tool(name: str) -> str:
    found = shutil.which(name) or (f"/usr/sbin/{name}" if Path(f"/usr/sbin/{name}").exists()
                                   else None)
    if not found:
        sys.exit(f"{name} not found: run `bash scripts/install-bench-deps.sh` (package postfix)")
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"smtp-sink did not start on port {port}")


def make_project(folder: Path, count: int) -> None:
    for name in PROJECT_FILES:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, folder / name)
        elif source.is_file():
            shutil.copy2(source, folder / name)
    (folder / "audiences").mkdir()
    with open(folder / "audiences" / "bench.csv", "w", encoding="utf-8") as handle:
        handle.write("email,name,organisation\n")
        for i in range(count):
            handle.write(f"reader{i:06d}@partner{i % 97:02d}.example.org,Reader {i},"
                         f"Partner {i % 97}\n")
    (folder / "audiences.yaml").write_text(
        "lists:\n  bench:\n    name: Bench\n    members_file: audiences/bench.csv\n")


def message_size(folder: Path) -> int:
    """The size of one of our messages, made through the maildir adapter (a test copy)."""
    env = dict(os.environ, NEWSLETTER_DB=str(folder / "size.db"))
    subprocess.run([newsletter(), "send", "2026-spring", "--test", "size@example.org",
                    "--maildir", str(folder / "size-maildir")], cwd=folder, env=env, check=True,
                   stdout=subprocess.DEVNULL)
    (path,) = (folder / "size-maildir" / "new").iterdir()
    data = path.read_bytes()
    email.message_from_bytes(data)  # it parses
    return len(data.replace(b"\n", b"\r\n"))


def newsletter() -> str:
    return shutil.which("newsletter") or str(Path(sys.executable).parent / "newsletter")


def run_ours(folder: Path, port: int, count: int) -> dict[str, float]:
    env = dict(os.environ, NEWSLETTER_SMTP_URL=f"smtp://127.0.0.1:{port}",
               NEWSLETTER_DB=str(folder / f"bench-{count}.db"))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    result = subprocess.run([newsletter(), "send", "2026-spring", "--to", "bench", "--adapter",
                             "smtp", "--concurrency", str(CONCURRENCY), "--yes", "--create-db",
                             "--allow-local-tracking"],
                            cwd=folder, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode != 0:
        sys.exit(f"newsletter send failed:\n{result.stdout}\n{result.stderr}")
    user = after.ru_utime - before.ru_utime
    system = after.ru_stime - before.ru_stime
    return {"wall": wall, "cpu": user + system, "user": user, "sys": system,
            "maxrss_mb": after.ru_maxrss / 1024}


def run_smtp_source(port: int, count: int, size: int) -> float:
    start = time.perf_counter()
    subprocess.run([tool("smtp-source"), "-s", str(CONCURRENCY), "-m", str(count), "-l",
                    str(size), "-f", "sender@example.org", "-t", "reader@example.org",
                    f"127.0.0.1:{port}"], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main(sizes: list[int]) -> int:
    sink = tool("smtp-sink")
    tool("smtp-source")
    print(f"{'recipients':>10}  {'ours msg/s':>10}  {'smtp-source msg/s':>17}  {'ratio':>5}  "
          f"{'our CPU ms/rcpt':>15}  {'our peak MB':>11}")
    for count in sizes:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            make_project(folder, count)
            size = message_size(folder)
            port = free_port()
            command = [sink, "-u", "nobody", f"127.0.0.1:{port}", "256"]
            if os.geteuid() != 0:
                command = [sink, f"127.0.0.1:{port}", "256"]
            server = subprocess.Popen(command, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL)
            try:
                wait_for_port(port)
                ours = run_ours(folder, port, count)
                theirs = run_smtp_source(port, count, size)
            finally:
                server.terminate()
                server.wait()
            ours_rate = count / ours["wall"]
            theirs_rate = count / theirs
            print(f"{count:>10}  {ours_rate:>10.0f}  {theirs_rate:>17.0f}  "
                  f"{ours_rate / theirs_rate:>5.2f}  {ours['cpu'] * 1000 / count:>15.3f}  "
                  f"{ours['maxrss_mb']:>11.1f}   (message {size} bytes; CPU user "
                  f"{ours['user'] * 1000 / count:.3f} + system {ours['sys'] * 1000 / count:.3f})",
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main([int(a) for a in sys.argv[1:]] or [10_000, 100_000]))
