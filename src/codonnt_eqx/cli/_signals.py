"""SIGINT and SIGTERM as exceptions: a command unwinds, cleans up, and exits 130 or 143."""

from __future__ import annotations

import signal


class Signalled(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived: unwinds like Ctrl-C, so every `finally` and atomic write
    cleans up on the way out."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def on_signal(signum, frame) -> None:
    # Once: a second signal while cleaning up must not cut the clean-up short.
    for s in (signal.SIGINT, signal.SIGTERM):
        signal.signal(s, signal.SIG_IGN)
    raise Signalled(signum)
