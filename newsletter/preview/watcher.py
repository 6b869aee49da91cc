"""Following the files the last build read, and building again when one is saved.

It watches the folders of those files (the issue, the theme, the images) and every template
folder, not the whole project recursively: that would follow .venv/ and build/ too.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

from newsletter.preview.state import Preview

# How long the watcher waits for a burst of file events (an editor's save is several) to end.
WATCH_STEP_MS = 20
# A quiet interval after which the watcher reports in (no changes): it is watching by then.
QUIET_MS = 250


def watch_dirs(preview: Preview) -> frozenset[Path]:
    """Folders to watch (not recursively): those of the files read, and every template folder."""
    dirs = {path.parent for path in preview.snapshot.watched}
    templates = preview.project.templates_dir
    if templates.is_dir():
        dirs.add(templates.resolve())
        dirs.update(p.resolve() for p in templates.rglob("*") if p.is_dir())
    return frozenset(d for d in dirs if d.is_dir())


def is_watched(preview: Preview, path: str) -> bool:
    """Whether a changed file should trigger a rebuild."""
    changed = Path(path)
    if changed in preview.snapshot.watched:
        return True
    templates = preview.project.templates_dir.resolve()
    return changed.is_relative_to(templates) and not changed.name.startswith(".")


async def watch(preview: Preview, stop: asyncio.Event) -> None:
    """Rebuild ``preview`` after every save until ``stop`` is set."""
    import watchfiles

    def wanted(_change: Any, path: str) -> bool:
        return is_watched(preview, path)

    while not stop.is_set():
        dirs = watch_dirs(preview)
        try:
            if dirs:
                async for changes in watchfiles.awatch(
                    *sorted(dirs), watch_filter=wanted, recursive=False,
                    step=WATCH_STEP_MS, stop_event=stop,
                    rust_timeout=QUIET_MS, yield_on_timeout=True,
                ):
                    preview.watched_once()
                    if not changes:
                        continue
                    await asyncio.to_thread(preview.rebuild)
                    if watch_dirs(preview) != dirs:
                        break  # the issue now uses a file in another folder: watch it too
                continue
        except Exception as exc:  # a folder vanished mid-watch...: say so, then start again
            preview.echo(f"Watching for changes failed ({exc}); trying again in a second.",
                         True)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 1.0)
