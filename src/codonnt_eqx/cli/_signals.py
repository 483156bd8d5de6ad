"""SIGINT and SIGTERM as exceptions: a command unwinds, cleans up, and exits 130 or 143."""

from __future__ import annotations

import _thread
import signal
import sys
import threading
from types import FrameType

# How long a signal whose exception Python dropped (in a gc callback, finaliser, ...) waits before
# it is delivered again: long enough for the callback to return, short enough to feel immediate.
REDELIVER_AFTER_S = 0.05


class Signalled(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived: unwinds like Ctrl-C, so every `finally` and atomic write
    cleans up on the way out."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _redelivering(previous):
    """An unraisable-exception hook that delivers a dropped `Signalled` again (and passes
    anything else on to `previous`).

    Python drops, through `sys.unraisablehook` ("Exception ignored in ..."), whatever a
    garbage-collector callback (JAX registers one), a `__del__`, a weakref callback or a
    `weakref.finalize` raises: a signal whose handler ran there would never reach the command.
    The handlers are re-armed (raising set them to ignore) and the signal is raised again a
    moment later, once that code has returned."""

    def hook(unraisable) -> None:
        error = unraisable.exc_value
        if not isinstance(error, Signalled):
            previous(unraisable)
            return
        if threading.current_thread() is threading.main_thread():
            for s in (signal.SIGINT, signal.SIGTERM):
                signal.signal(s, on_signal)
        timer = threading.Timer(REDELIVER_AFTER_S, _thread.interrupt_main, (error.signum,))
        timer.daemon = True
        timer.start()

    hook.redelivers_signals = True  # type: ignore[attr-defined]
    return hook


def on_signal(signum: int, frame: FrameType | None) -> None:
    """The handler for SIGINT and SIGTERM: raises `Signalled` where the command will see it.

    Python runs a handler in whatever the main thread is executing; where that code's
    exceptions are dropped (see `_redelivering`), the signal is delivered again a moment later.
    """
    if not getattr(sys.unraisablehook, "redelivers_signals", False):
        sys.unraisablehook = _redelivering(sys.unraisablehook)
    # Once: a second signal while cleaning up must not cut the clean-up short.
    for s in (signal.SIGINT, signal.SIGTERM):
        signal.signal(s, signal.SIG_IGN)
    raise Signalled(signum)
