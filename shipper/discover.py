"""Discover stage: which files to tail, noticed through inotify with a periodic rescan."""

from __future__ import annotations

import asyncio
import fnmatch
import glob
import os
from collections.abc import Callable, Iterable

from shipper.config import InputsConfig
from shipper.notify import Notifier


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

    async def watch(self, notifier: Notifier, extra_dirs: Callable[[], Iterable[str]],
                    on_change: Callable[[set[str]], None],
                    rescan: Callable[[], None]) -> None:
        """Forever: call rescan every inputs.rescan_interval, and at once when something
        appears in a glob root (or inotify lost events); report what appears, moves and goes
        in the glob roots and in `extra_dirs` to on_change."""
        interval = self._config.rescan_interval
        loop = asyncio.get_running_loop()
        while True:
            rescan()
            next_rescan = loop.time() + interval
            roots = self.roots()
            notifier.watch_dirs(d for d in (*roots, *extra_dirs()) if os.path.isdir(d))
            while (left := next_rescan - loop.time()) > 0:
                paths = await notifier.changes(left)
                if paths is None:
                    break  # events were lost: look at everything
                if paths:
                    on_change(paths)
                    if any(os.path.dirname(p) in roots for p in paths):
                        break  # a new file (or a new root) appeared
