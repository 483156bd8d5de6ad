"""SIGINT and SIGTERM as exceptions: a command unwinds, cleans up, and exits 130 or 143."""

from __future__ import annotations

import _thread
import gc
import signal
import threading
import weakref
from types import FrameType

# How long a signal that arrived inside a garbage-collector callback or a finaliser waits before
# it is delivered again: long enough for the callback to return, short enough to feel immediate.
REDELIVER_AFTER_S = 0.05


class Signalled(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived: unwinds like Ctrl-C, so every `finally` and atomic write
    cleans up on the way out."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _swallows_exceptions(frame: FrameType | None) -> bool:
    """Whether `frame` runs inside code whose exceptions Python prints and drops ("Exception
    ignored in ..."): a garbage-collector callback (JAX registers one), a `__del__`, or a
    `weakref.finalize` callback. An exception raised there would never reach the command."""
    callbacks = {getattr(c, "__code__", None) for c in gc.callbacks}
    finalize = weakref.finalize.__call__.__code__
    while frame is not None:
        code = frame.f_code
        if code in callbacks or code is finalize or code.co_name == "__del__":
            return True
        frame = frame.f_back
    return False


def on_signal(signum: int, frame: FrameType | None) -> None:
    """The handler for SIGINT and SIGTERM: raises `Signalled` where the command will see it.

    Python runs a handler in whatever the main thread is executing; inside a garbage-collector
    callback or a finaliser the exception would be dropped and the command would run to the
    end as if no signal had come. There the signal is delivered again a moment later instead.
    """
    if _swallows_exceptions(frame):
        timer = threading.Timer(REDELIVER_AFTER_S, _thread.interrupt_main, (signum,))
        timer.daemon = True
        timer.start()
        return
    # Once: a second signal while cleaning up must not cut the clean-up short.
    for s in (signal.SIGINT, signal.SIGTERM):
        signal.signal(s, signal.SIG_IGN)
    raise Signalled(signum)
