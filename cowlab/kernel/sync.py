"""Synchronisation between the scenario's threads (the cow.c tests use pipes
for this): ``signal NAME`` sets an event, ``wait NAME`` blocks until it is set."""
from __future__ import annotations

from .paths import step, op
from .txn import Blocked


@step("sync.signal")
def signal(k, fr, op):
    k.signals = k.signals | {op["event"]}
    return None


@step("sync.wait")
def wait(k, fr, op):
    if op["event"] not in k.signals:
        raise Blocked(f"waiting for {op['event']}")
    return None


op("signal", "sync.signal", "write() to a sync pipe", ("event",), "set an event")
op("wait", "sync.wait", "read() from a sync pipe", ("event",), "block until the event is set")
