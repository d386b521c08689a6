"""The Hub probe: one connection attempt answers a score run's three questions, and a later one asks again."""

from __future__ import annotations

import socket

from gaincurate import hub


def test_one_probe_answers_for_a_minute_then_the_hub_is_asked_again(monkeypatch):
    tries = []

    def refuse(address, timeout):
        tries.append(address)
        raise ConnectionRefusedError(111, "Connection refused")

    clock = [1000.0]
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(hub.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(hub, "_probed", {})
    for name in hub._PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    assert hub.hub_unreachable() == hub.hub_unreachable() == "127.0.0.1: Connection refused"
    assert tries == [("127.0.0.1", 9)]
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:10")  # another endpoint: its own answer
    hub.hub_unreachable()
    clock[0] += hub.PROBE_SECONDS
    hub.hub_unreachable()
    assert tries == [("127.0.0.1", 9), ("127.0.0.1", 10), ("127.0.0.1", 10)]
