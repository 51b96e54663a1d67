"""MarkLedger: which chunks a carrier's mark echo proves played, per utterance."""

from __future__ import annotations

from voicegraph.nodes.audio.playout_marks import MarkLedger


def send(ledger: MarkLedger, utt: int, seconds: float = 0.02) -> str:
    name = ledger.next_chunk()
    ledger.sent(utt, ledger.progress(utt), seconds)
    return name


def test_mark_names_carry_the_generation_and_the_chunk_number() -> None:
    ledger = MarkLedger("vg", max_unacked=10)
    assert [send(ledger, 1), send(ledger, 1)] == ["vg0.1", "vg0.2"]


def test_an_echo_acknowledges_its_chunk_and_every_earlier_one() -> None:
    ledger = MarkLedger("vg", max_unacked=10)
    send(ledger, 1)
    send(ledger, 2)
    third = send(ledger, 2)
    send(ledger, 2)
    advanced = ledger.ack(third)
    assert {utt: (round(u.played, 6), first) for utt, (u, first) in advanced.items()} == {
        1: (0.02, True),
        2: (0.04, True),
    }
    assert ledger.oldest_utterance == 2 and ledger.unacknowledged


def test_echoes_of_marks_sent_before_a_clear_are_late_and_change_nothing() -> None:
    ledger = MarkLedger("vg", max_unacked=10)
    name = send(ledger, 1)
    old, unfinished = ledger.clear()
    assert (old, ledger.generation, list(unfinished)) == (0, 1, [1])
    assert ledger.ack(name) == {} and ledger.late_marks == 1


def test_names_that_are_not_ours_are_counted_as_unknown() -> None:
    ledger = MarkLedger("vg", max_unacked=10)
    assert ledger.ack("someone-else") == {} and ledger.ack("vgx.1") == {}
    assert ledger.unknown_marks == 2


def test_beyond_max_unacked_the_oldest_chunks_are_forgotten() -> None:
    ledger = MarkLedger("vg", max_unacked=2)
    for _ in range(3):
        send(ledger, 1)
    assert ledger.forgotten_marks == 1
    [(u, _)] = ledger.ack("vg0.3").values()
    assert u.chunks_played == 2 and not u.finished  # the forgotten chunk is never acknowledged
