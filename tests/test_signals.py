"""The CLI's signal handler: a signal is never lost, wherever in Python it lands."""

import gc
import os
import signal
import threading
import time
import weakref

import pytest

from codonnt_eqx.cli._signals import Signalled, on_signal


@pytest.fixture
def handler():
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signal handlers are installed from the main thread only")
    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    yield
    for s, h in previous.items():
        signal.signal(s, h)


def _wait_for_signal() -> None:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        time.sleep(0.01)
    pytest.fail("the signal was lost")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_in_plain_code_raises_at_once(handler, signum):
    with pytest.raises(Signalled) as caught:
        os.kill(os.getpid(), signum)
        _wait_for_signal()
    assert caught.value.signum == signum
    # a second signal while cleaning up is ignored
    assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN


def test_a_signal_inside_a_gc_callback_is_not_swallowed(handler):
    # JAX registers a gc callback; Python drops what a callback raises. This is the failure
    # seen in CI: SIGTERM during a collection, and embed ran to the end with status 0.
    fired = []

    def callback(phase, info):
        if phase == "start" and not fired:
            fired.append(True)
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.02)  # the handler runs here, inside the callback

    gc.callbacks.append(callback)
    try:
        with pytest.raises(Signalled) as caught:
            gc.collect()
            _wait_for_signal()
    finally:
        gc.callbacks.remove(callback)
    assert fired and caught.value.signum == signal.SIGTERM


def test_a_signal_inside_a_finaliser_is_not_swallowed(handler):
    class Resource:
        def __del__(self):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.02)

    with pytest.raises(Signalled) as caught:
        r = Resource()
        del r
        _wait_for_signal()
    assert caught.value.signum == signal.SIGINT


def test_a_signal_inside_a_weakref_finalizer_is_not_swallowed(handler):
    class Thing:
        pass

    def cleanup():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.02)

    with pytest.raises(Signalled):
        t = Thing()
        weakref.finalize(t, cleanup)
        del t
        _wait_for_signal()


def test_a_signal_inside_a_weakref_callback_is_not_swallowed(handler):
    # The CI failure of the frame-based check: the signal ran inside WeakKeyDictionary's
    # `remove`, a plain weakref callback (not a gc callback, __del__ or weakref.finalize).
    class Thing:
        pass

    def callback(_ref):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.02)

    with pytest.raises(Signalled) as caught:
        t = Thing()
        ref = weakref.ref(t, callback)
        del t
        _wait_for_signal()
    assert ref() is None and caught.value.signum == signal.SIGTERM


def test_other_dropped_exceptions_still_reach_the_previous_hook(handler, monkeypatch):
    seen = []
    monkeypatch.setattr("sys.unraisablehook", seen.append)
    with pytest.raises(Signalled):
        on_signal(signal.SIGTERM, None)
    for s in (signal.SIGINT, signal.SIGTERM):
        signal.signal(s, on_signal)

    class Noisy:
        def __del__(self):
            raise RuntimeError("not a signal")

    n = Noisy()
    del n
    assert [type(u.exc_value) for u in seen] == [RuntimeError]
