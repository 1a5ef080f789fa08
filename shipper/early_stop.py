"""A SIGTERM that arrives before the agent installs its own handler (kubelet may stop the pod at
any moment). Nothing has been read yet, so leaving at once is a clean stop; Python's default
would die of the signal (exit 143)."""

from __future__ import annotations

import signal
from types import FrameType
from typing import NoReturn

# Set by the handler. Its SystemExit can be lost: raised inside a callback whose exceptions
# Python ignores (seen: importlib's module lock callback, on a start-up slowed by compiling
# .pyc files), the start-up carries on; the agent then sees this and stops as soon as it runs.
requested = False


def _on_sigterm(signum: int, frame: FrameType | None) -> NoReturn:
    global requested
    requested = True
    raise SystemExit(0)


def install() -> None:
    signal.signal(signal.SIGTERM, _on_sigterm)
