"""StallWatch: when a provider that accepted the connection counts as stalled."""

from __future__ import annotations

import pytest

from voicegraph.nodes.providers import ProviderStalled
from voicegraph.nodes.providers.watchdog import StallWatch


def test_a_request_unanswered_while_the_provider_is_silent_is_a_stall() -> None:
    watch = StallWatch("svc", timeout=5.0, retries=1)
    assert watch.stalled(now=10.0, oldest_pending=4.0, last_received=4.5, connected=True)
    assert watch.stalls == 1


def test_a_provider_still_sending_something_is_not_stalled() -> None:
    watch = StallWatch("svc", timeout=5.0, retries=1)
    assert not watch.stalled(now=10.0, oldest_pending=1.0, last_received=8.0, connected=True)
    assert watch.stalls == 0


def test_no_stall_is_judged_while_no_socket_is_up() -> None:
    watch = StallWatch("svc", timeout=5.0, retries=1)
    assert not watch.stalled(now=10.0, oldest_pending=1.0, last_received=1.0, connected=False)


def test_one_stall_more_than_the_retries_raises_provider_stalled() -> None:
    watch = StallWatch("svc", timeout=5.0, retries=1)
    watch.stalled(now=10.0, oldest_pending=1.0, last_received=1.0, connected=True)
    with pytest.raises(ProviderStalled, match="svc: no answer for 5s"):
        watch.stalled(now=20.0, oldest_pending=11.0, last_received=11.0, connected=True)


def test_a_moment_with_nothing_pending_starts_the_count_of_stalls_in_a_row_again() -> None:
    watch = StallWatch("svc", timeout=5.0, retries=1)
    watch.stalled(now=10.0, oldest_pending=1.0, last_received=1.0, connected=True)
    assert not watch.stalled(now=11.0, oldest_pending=None, last_received=1.0, connected=True)
    assert watch.stalled(now=20.0, oldest_pending=11.0, last_received=11.0, connected=True)
    assert (watch.stalls, watch.strikes) == (2, 1)
