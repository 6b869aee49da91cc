"""Benchmark: building the sample issue, beside the official MJML tool in the same run.

Prints the in-process build time (load + render + inline + files) and the whole-process time
of `newsletter build` beside `mjml` (npm) compiling the same email.mjml. Ratios hold on a noisy
machine; absolute times do not.

    python bench/bench_build.py            (make bench runs every benchmark)
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from newsletter.build import build_issue, write_build  # noqa: E402
from newsletter.project import Project  # noqa: E402

RUNS = 20
PROCESS_RUNS = 7


def find_mjml() -> str | None:
    """The npm mjml command: $MJML_BIN, .bench-tools (scripts/install-bench-deps.sh) or PATH."""
    for candidate in (os.environ.get("MJML_BIN"), REPO / ".bench-tools/node_modules/.bin/mjml",
                      shutil.which("mjml")):
        if candidate and Path(candidate).exists():
            return str(candidate)
    return None


def timed(fn, runs: int) -> list[float]:  # type: ignore[no-untyped-def]
    out = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def main() -> int:
    project = Project.load(REPO)
    issue = REPO / "issues" / "2026-spring.yaml"
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        cold = timed(lambda: write_build(build_issue(issue, project), out), 1)[0]
        warm = timed(lambda: write_build(build_issue(issue, project), out), RUNS)
        print(f"in-process build (sample issue): first {cold * 1000:.0f} ms, "
              f"then median {statistics.median(warm) * 1000:.1f} ms over {RUNS} runs")

        newsletter = shutil.which("newsletter") or str(Path(sys.executable).parent / "newsletter")
        ours = timed(lambda: subprocess.run([newsletter, "build", str(issue), "--out", tmp],
                                            check=True, capture_output=True, cwd=REPO),
                     PROCESS_RUNS)
        ours_median = statistics.median(ours)
        print(f"whole process `newsletter build`: median {ours_median * 1000:.0f} ms "
              f"over {PROCESS_RUNS} runs")
        mjml = find_mjml()
        if mjml is None:
            print("mjml (npm) not found: run scripts/install-bench-deps.sh for the reference")
            return 1
        source = out / "2026-spring" / "email.mjml"
        theirs = timed(lambda: subprocess.run([mjml, str(source), "-o", str(out / "ref.html")],
                                              check=True, capture_output=True), PROCESS_RUNS)
        theirs_median = statistics.median(theirs)
        print(f"whole process `mjml email.mjml` (reference, MJML only): median "
              f"{theirs_median * 1000:.0f} ms over {PROCESS_RUNS} runs")
        ratio = ours_median / theirs_median
        print(f"ratio newsletter build / mjml = {ratio:.2f} (aim: <= 0.50)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
