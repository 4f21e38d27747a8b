"""A run's CPU limit where fuel cannot see: in the host's code behind WASI calls.

Fuel is charged per wasm instruction only. A guest calling ``random_get`` or ``clock_time_get`` in a loop
spends nearly all its CPU inside wasmtime's host functions (and their helper threads) and hardly any
fuel. A worker runs one guest at a time, so the worker process's CPU time is the run's: the kernel's
``ITIMER_PROF`` counts it (user and system, every thread) and raises ``SIGPROF`` when the run's budget is
spent. SIGPROF is blocked in every thread of the worker and taken by this clock's own thread with
``sigwait``, which then advances the engine's epoch: the guest traps with INTERRUPT at its next loop
back-edge or call, as with the wall clock. A run that stays under its limit costs two ``setitimer``
calls, a clock read and no wake-up.

Fuel still ends pure computation (precisely, and reported in units); the timer is set a little past
``cpu_seconds`` (:func:`cpu_timer_seconds`) so that it ends only what fuel does not count.
"""

from __future__ import annotations

import os
import signal
import threading
import time

import wasmtime

__all__ = ["CpuClock", "cpu_timer_seconds"]

_SLACK_FRACTION = 0.1
_MIN_SLACK_SECONDS = 0.02


def cpu_timer_seconds(cpu_seconds: float) -> float:
    """When the CPU timer of a run with ``cpu_seconds`` fires: 10 % (at least 20 ms) after fuel would
    have run out in pure computation (fuel is calibrated at ~1 unit per instruction-ns)."""
    return cpu_seconds + max(_MIN_SLACK_SECONDS, cpu_seconds * _SLACK_FRACTION)


class CpuClock:
    """Interrupts the current run when the worker process has spent its CPU budget since :meth:`arm`.

    Must be made before the worker starts any other thread (wasmtime's included): threads inherit the
    signal mask that keeps SIGPROF for this clock's ``sigwait``.
    """

    def __init__(self, engine: wasmtime.Engine) -> None:
        if len(os.listdir("/proc/self/task")) != 1:
            raise RuntimeError("the CPU clock must be made before the worker starts a thread")
        self._engine = engine
        self._lock = threading.Lock()
        self._deadline: float | None = None  # the process CPU time (time.process_time) the run may reach
        self._fired = False
        # A handler, never run (the signal stays blocked): the kernel drops a signal at its default
        # action sent to the init of a pid namespace, which a sandboxed worker is.
        signal.signal(signal.SIGPROF, lambda *_: None)
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGPROF})
        threading.Thread(target=self._loop, name="cpu-clock", daemon=True).start()

    def _loop(self) -> None:
        while True:
            signal.sigwait({signal.SIGPROF})
            with self._lock:
                if self._deadline is None:
                    continue  # the run it was meant for has ended
                # The timer counts sampled user + system time, which can run ahead of the process's
                # CPU clock (what the run reports as cpu_ms): wait for the rest on the latter's word.
                remaining = self._deadline - time.process_time()
                if remaining > 0:
                    signal.setitimer(signal.ITIMER_PROF, max(remaining, 0.001))
                    continue
                self._fired = True
                self._engine.increment_epoch()

    def arm(self, cpu_seconds: float) -> None:
        """Arm for one run of ``cpu_seconds`` (the timer fires at :func:`cpu_timer_seconds`); 0: no timer.
        Explicit calls, not a context manager: this is on every run's path."""
        if cpu_seconds <= 0:
            return
        budget = cpu_timer_seconds(cpu_seconds)
        with self._lock:
            self._deadline, self._fired = time.process_time() + budget, False
            signal.setitimer(signal.ITIMER_PROF, budget)

    def disarm(self) -> bool:
        """Stop the timer; whether it interrupted the run armed for."""
        with self._lock:
            if self._deadline is None:
                return False
            signal.setitimer(signal.ITIMER_PROF, 0)
            self._deadline = None  # no SIGPROF meant for this run can reach the next one
            return self._fired
