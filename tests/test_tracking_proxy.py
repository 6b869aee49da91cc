"""The nginx configuration docs/tracking.md gives, run for real in front of the real tracker."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
from pathlib import Path

import httpx
import pytest
from helpers import free_port, nginx_config, start_tracker, stop_group, wait_for_port

from newsletter.tracking.tokens import signer_for

DOCS = Path(__file__).resolve().parent.parent / "docs" / "tracking.md"


def documented_block() -> str:
    [block] = re.findall(r"```nginx\n(.*?)```", DOCS.read_text(encoding="utf-8"), re.S)
    return block


def test_the_documented_proxy_serves_clicks(tracking_db, tmp_path) -> None:  # type: ignore[no-untyped-def]
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(nginx).exists():
        pytest.fail("nginx is not installed: bash scripts/install-system-deps.sh")
    tracker_port, proxy_port = free_port(), free_port()
    block = documented_block()
    # The same block on 127.0.0.1 without TLS, in front of one tracker instead of two.
    block = block.replace("listen 443 ssl;", f"listen 127.0.0.1:{proxy_port};")
    block = re.sub(r"\n\s*ssl_certificate\S* [^;]+;", "", block)
    block = block.replace("server 127.0.0.1:8025;", f"server 127.0.0.1:{tracker_port};")
    block = block.replace("server 127.0.0.1:8026;", "")
    conf = tmp_path / "nginx.conf"
    conf.write_text(nginx_config(tmp_path, block))
    check = subprocess.run([nginx, "-t", "-c", str(conf), "-p", str(tmp_path), "-e",
                            str(tmp_path / "error.log")], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    token = signer_for(tracking_db).click("spring", "d1", pseudonym="p2")
    tracker = start_tracker(tracking_db.url, tmp_path, tracker_port)
    proxy = subprocess.Popen([nginx, "-c", str(conf), "-p", str(tmp_path), "-e",
                              str(tmp_path / "error.log")], stderr=subprocess.PIPE, text=True)
    try:
        wait_for_port(proxy_port, proxy)
        with httpx.Client(base_url=f"http://127.0.0.1:{proxy_port}") as http:
            for _ in range(3):  # the later ones over nginx's kept-alive upstream connection
                response = http.get(f"/c/{token}")
                assert response.status_code == 302
                assert response.headers["location"] == "https://example.org/guide.pdf"
            assert http.get("/healthz").status_code == 200
    finally:
        proxy.send_signal(signal.SIGQUIT)
        proxy.communicate(timeout=30)
        tracker.send_signal(signal.SIGTERM)
        out, err = tracker.communicate(timeout=60)
        stop_group(tracker)
    assert "Stopped; 3 event(s) stored." in err
