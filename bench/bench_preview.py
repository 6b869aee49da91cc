"""Save-to-page latency of ``newsletter preview``, measured in a real headless Chromium.

For each of 20 edits to a copy of the sample issue: the time from just before the file is
written to the first animation frame after the page has swapped in the new email (the new
frame has loaded and is visible). Both clocks are this machine's wall clock: Python's
``time.time()`` and the page's ``performance.timeOrigin + performance.now()``.

For reference, the same run also times ``build_issue`` in-process: the floor the preview
cannot beat, since it rebuilds the issue on every save.

Run: .venv/bin/python bench/bench_preview.py   (or `make bench`)
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
import time
from pathlib import Path

from playwright.sync_api import sync_playwright

from newsletter.build import build_issue
from newsletter.preview import PreviewServer, bind, create_app
from newsletter.project import Project

REPO = Path(__file__).resolve().parent.parent
PROJECT_FILES = ("issues", "templates", "images", "theme.yaml", "newsletter.yaml")
ISSUE = "issues/2026-spring.yaml"
HEADING = "heading: Prevent is safeguarding\n"
EDITS = 20
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]

# Records when each new email frame becomes the visible one (the frame after the swap).
RECORD_SWAPS = """() => {
  window.__swaps = [];
  new MutationObserver((changes) => {
    for (const change of changes) {
      if (change.target.hasAttribute && change.target.hasAttribute('data-active')) {
        requestAnimationFrame(() => window.__swaps.push({
          at: performance.timeOrigin + performance.now(),
          text: change.target.contentDocument.body.innerText}));
      }
    }
  }).observe(document.getElementById('frame-box'),
             {subtree: true, attributes: true, attributeFilter: ['data-active']});
}"""


def copy_project(target: Path) -> Path:
    for name in PROJECT_FILES:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, target / name)
        elif source.is_file():
            shutil.copy2(source, target / name)
    return target / ISSUE


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def time_builds(issue: Path, project: Project, runs: int = EDITS) -> tuple[float, list[float]]:
    started = time.perf_counter()
    build_issue(issue, project, tracked=False)
    first = (time.perf_counter() - started) * 1000
    timings = []
    for _ in range(runs):
        started = time.perf_counter()
        build_issue(issue, project, tracked=False)
        timings.append((time.perf_counter() - started) * 1000)
    return first, timings


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bench-preview-") as folder:
        issue = copy_project(Path(folder))
        source = issue.read_text(encoding="utf-8")
        assert HEADING in source, f"{ISSUE} no longer has the line {HEADING!r}"
        project = Project.load(issue.parent)

        app = create_app(issue, project, echo=lambda message, is_error: None)
        preview = app.state.preview
        rebuild_times: list[tuple[float, float]] = []  # wall clock ms: (started, finished)
        rebuild = preview.rebuild

        def timed_rebuild():  # type: ignore[no-untyped-def]
            started = time.time() * 1000
            snapshot = rebuild()
            rebuild_times.append((started, time.time() * 1000))
            return snapshot

        preview.rebuild = timed_rebuild
        server = PreviewServer(app, bind("127.0.0.1", 0)).start()
        latencies: list[float] = []
        noticed: list[float] = []  # save -> rebuild starts (the watcher)
        rebuilds: list[float] = []  # the rebuild itself
        delivered: list[float] = []  # rebuild done -> new email visible (events, fetch, frame)
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM,
                                                     args=CHROMIUM_ARGS)
                page = browser.new_page(viewport={"width": 1280, "height": 900})
                page.goto(server.url)
                page.wait_for_selector("#frame-box iframe[data-active]")
                page.evaluate(RECORD_SWAPS)
                server.preview.watching.wait(10)
                for n in range(EDITS):
                    marker = f"bench edit {n:02d}"
                    swaps_before = page.evaluate("window.__swaps.length")
                    written = time.time() * 1000
                    issue.write_text(source.replace(HEADING, f"heading: {marker}\n"),
                                     encoding="utf-8")
                    page.wait_for_function(
                        "([count, marker]) => window.__swaps.length > count && "
                        "window.__swaps[window.__swaps.length - 1].text.includes(marker)",
                        arg=[swaps_before, marker], timeout=5000)
                    shown = page.evaluate("window.__swaps[window.__swaps.length - 1].at")
                    latencies.append(shown - written)
                    started, finished = rebuild_times[-1]
                    noticed.append(started - written)
                    rebuilds.append(finished - started)
                    delivered.append(shown - finished)
                    time.sleep(0.3)  # a person does not save 20 times a second
                version = page.evaluate("document.body.dataset.version")
                browser.close()
        finally:
            server.stop()

        issue.write_text(source, encoding="utf-8")
        first, builds = time_builds(issue, project)

    print(f"preview save-to-page latency, {EDITS} edits of {ISSUE} in headless Chromium "
          f"(page version {version}):")
    print(f"  median {statistics.median(latencies):.0f} ms, "
          f"p90 {percentile(latencies, 0.9):.0f} ms, "
          f"min {min(latencies):.0f} ms, max {max(latencies):.0f} ms")
    print(f"  medians of its parts: watcher notices the save {statistics.median(noticed):.0f} ms, "
          f"rebuild {statistics.median(rebuilds):.0f} ms, "
          f"event + fetch + frame load + paint {statistics.median(delivered):.0f} ms")
    print(f"reference, build_issue(tracked=False) in-process: first {first:.0f} ms, then "
          f"median {statistics.median(builds):.0f} ms, p90 {percentile(builds, 0.9):.0f} ms "
          f"over {len(builds)} runs")


if __name__ == "__main__":
    main()
