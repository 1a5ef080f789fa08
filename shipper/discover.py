"""Discover stage: which files to tail, noticed through inotify with a periodic rescan."""

from __future__ import annotations

import asyncio
import fnmatch
import glob
import logging
import os
from collections.abc import Callable, Iterable

import watchfiles

from shipper.config import InputsConfig

log = logging.getLogger(__name__)


def _existing(directory: str) -> str:
    while not os.path.isdir(directory) and os.path.dirname(directory) != directory:
        directory = os.path.dirname(directory)
    return directory


def static_root(pattern: str) -> str:
    """The directory part of a glob before its first wildcard: what inotify can watch."""
    parts = pattern.split(os.sep)
    for i, part in enumerate(parts):
        if glob.has_magic(part):
            return os.sep.join(parts[:i]) or os.sep
    return os.path.dirname(pattern) or os.curdir


class Discoverer:
    """Finds paths matching inputs.paths minus inputs.exclude, and tells the agent about file
    activity. Knows nothing of Kubernetes or of reading: `paths()` is the whole seam."""

    def __init__(self, config: InputsConfig) -> None:
        self._config = config

    def paths(self) -> list[str]:
        found: dict[str, None] = {}  # ordered, deduplicated
        for pattern in self._config.paths:
            for path in sorted(glob.glob(pattern)):
                if not any(fnmatch.fnmatch(path, ex) for ex in self._config.exclude):
                    found[path] = None
        return list(found)

    def roots(self) -> set[str]:
        """Where new files appear: each glob's static directory, or its nearest existing
        ancestor until it exists (its creation is then noticed too)."""
        return {_existing(static_root(p)) for p in self._config.paths}

    async def watch(self, extra_dirs: Callable[[], Iterable[str]],
                    on_change: Callable[[set[str]], None],
                    rescan: Callable[[], None]) -> None:
        """Forever: report changed paths to on_change (inotify via watchfiles), and call rescan
        when something appears in a glob root, or every inputs.rescan_interval regardless."""
        interval = self._config.rescan_interval
        loop = asyncio.get_running_loop()
        while True:
            rescan()
            last_rescan = loop.time()
            dirs = {d for d in (*self.roots(), *extra_dirs()) if os.path.isdir(d)}
            stop = asyncio.Event()
            try:
                async for changes in watchfiles.awatch(
                        *sorted(dirs), watch_filter=None, recursive=False, stop_event=stop,
                        debounce=200, step=500, rust_timeout=int(interval * 1000),
                        yield_on_timeout=True, ignore_permission_denied=True):
                    paths = {path for _, path in changes}
                    if paths:
                        on_change(paths)
                    roots = self.roots()
                    if (loop.time() - last_rescan >= interval
                            or any(os.path.dirname(p) in roots for p in paths)):
                        rescan()
                        last_rescan = loop.time()
                    wanted = {d for d in (*roots, *extra_dirs()) if os.path.isdir(d)}
                    if wanted != dirs:
                        break  # the set of directories changed: watch the new set
            except (OSError, RuntimeError) as exc:
                log.warning("inotify watch failed; relying on the periodic rescan",
                            extra={"error": str(exc)})
                await asyncio.sleep(interval)
            finally:
                stop.set()
