"""PlayoutOptions: the pacing and mark settings of :class:`~voicegraph.nodes.audio.playout.Playout`.

The pacing model they tune is described in :mod:`voicegraph.nodes.audio.playout`; each limit is
checked when the options are built, with the reason it exists.
"""

from __future__ import annotations

import msgspec

__all__ = ["PlayoutOptions"]


class PlayoutOptions(msgspec.Struct, frozen=True):
    """Options of :class:`~voicegraph.nodes.audio.playout.Playout` (seconds unless stated).

    ``lead``: how far ahead of real time audio is sent (the most stale audio a clear must drop).
    ``chunk``: the longest message (one ``media`` message): queued 20 ms pieces of an
    utterance that are due together go as one, up to ``chunk``. ``max_queued``: audio held
    waiting to be sent; frames beyond it are dropped and counted. ``max_unacked``: marks awaiting
    an echo; beyond it the oldest are forgotten (counted), so a carrier that never echoes cannot
    grow memory. ``mark_prefix``: start of every mark name.

    ``mark_interval``: seconds of audio between marks. A mark follows the chunk that completes
    the interval, the last chunk of an utterance, and the last chunk queued, so every utterance
    is acknowledged to its end; between marks, playback is known only up to the last echoed
    mark, so a barge-in reports up to ``mark_interval`` less than the caller heard (never more).
    ``mark_interval <= chunk`` marks every chunk. ``tick``: the pacing grid: a chunk is sent
    up to ``tick`` seconds after it is due, by the process-wide pacer shared with every other
    call (:mod:`voicegraph.pacer`; each call on its own 2 ms slot of the grid); at most
    ``(lead - chunk) / 2``. ``0`` uses a timer of this call's own, exactly at the deadline."""

    lead: float = 0.14
    chunk: float = 0.06
    max_queued: float = 600.0
    max_unacked: int = 3000
    mark_prefix: str = "vg"
    mark_interval: float = 0.1
    tick: float = 0.02

    def __post_init__(self) -> None:
        if not 0.005 <= self.chunk <= 0.2:
            raise ValueError(f"chunk must be 0.005..0.2 s, got {self.chunk}")
        if not self.chunk <= self.lead <= 2.0:
            # with less than one chunk ahead the carrier would run dry between chunks
            raise ValueError(f"lead must be from chunk ({self.chunk}) to 2 s, got {self.lead}")
        if not self.max_queued > 0:
            raise ValueError("max_queued must be positive")
        if self.max_unacked < 1:
            raise ValueError("max_unacked must be >= 1")
        if not self.mark_prefix or "." in self.mark_prefix:
            raise ValueError("mark_prefix must be non-empty and contain no '.'")
        if not 0 <= self.mark_interval <= 1.0:
            raise ValueError(f"mark_interval must be 0..1 s, got {self.mark_interval}")
        if not 0 <= self.tick <= (self.lead - self.chunk) / 2 + 1e-9:
            # a later send than that could let the carrier's buffer run dry
            raise ValueError(
                f"tick must be 0..(lead - chunk) / 2 = {(self.lead - self.chunk) / 2:g} s, "
                f"got {self.tick}"
            )
