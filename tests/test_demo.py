"""`make demo` is the quick start: it must keep working as the code under it changes."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# what a project folder holds, and the demo script itself
FILES = ("issues", "templates", "audiences", "images", "theme.yaml", "audiences.yaml",
         "newsletter.yaml", "scripts")


def test_the_demo_runs_from_a_fresh_project(tmp_path: Path) -> None:
    root = tmp_path / "fresh"
    root.mkdir()
    for name in FILES:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, root / name)
        else:
            shutil.copy2(source, root / name)
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    # its own process group, so a demo stuck anywhere is stopped whole (tracker included)
    demo = subprocess.Popen(["bash", "scripts/demo.sh"], cwd=root, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        stdout, stderr = demo.communicate(timeout=300)
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)
            demo.communicate()
    assert demo.returncode == 0, stdout[-3000:] + stderr[-3000:]
    assert len(list((root / "maildir" / "new").iterdir())) == 44
    assert (root / "build" / "2026-spring" / "report.html").is_file()
    # the reshared view and the person's click on a download are counted, the scanner's HEAD
    # on the same link is not: what the demo says it shows
    assert "-> 302" in stdout
    assert "Viewers: 1 · Downloads: 1 · Clicks: 1" in stdout
    assert "Probable scanners: 1 clicks, 0 views" in stdout
