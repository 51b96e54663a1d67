"""Small nodes for engine tests: sources, sinks, pass-through actors and stages."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import anyio

from voicegraph import Actor, AudioFrame, Frame, In, Out, Stage

BOTH_BACKENDS = ("asyncio", "trio")
"""For tests that must hold on both backends: ``@pytest.fixture(params=BOTH_BACKENDS)``."""


def audio(i: int, tag: int = 0) -> AudioFrame:
    return AudioFrame(data=bytes(320), timestamp=float(i), utterance_id=tag)


class Source(Actor):
    """Sends the given frames, then ends."""

    outputs = (Out("out"),)

    def __init__(self, frames: Sequence[Frame], delay: float = 0.0) -> None:
        super().__init__()
        self.frames = list(frames)
        self.delay = delay

    async def run(self) -> None:
        for f in self.frames:
            await self.send("out", f)
            if self.delay:
                await anyio.sleep(self.delay)


class Sink(Actor):
    """Collects every frame it receives, with the port it came in on."""

    inputs = (In("in"),)

    def __init__(self, delay: float = 0.0, ports: Sequence[str] = ("in",)) -> None:
        super().__init__()
        self.inputs = tuple(In(p) for p in ports)
        self.got: list[Frame] = []
        self.ports: list[str] = []
        self.delay = delay

    async def handle(self, port: str, frame: Frame) -> None:
        self.got.append(frame)
        self.ports.append(port)
        if self.delay:
            await anyio.sleep(self.delay)


class PassActor(Actor):
    inputs = (In("in"),)
    outputs = (Out("out"),)


class MapStage(Stage):
    """Applies ``fn`` to each frame; ``fn`` may return None, a frame or a list."""

    inputs = (In("in"),)
    outputs = (Out("out"),)

    def __init__(self, fn: Callable[[Frame], object], tail: Sequence[Frame] = ()) -> None:
        super().__init__()
        self.fn = fn
        self.tail = list(tail)

    def process(self, port: str, frame: Frame):  # type: ignore[no-untyped-def]
        return self.fn(frame)

    def finish(self):  # type: ignore[no-untyped-def]
        return self.tail or None


class MapActor(Actor):
    """The actor twin of :class:`MapStage` (same function, own task)."""

    inputs = (In("in"),)
    outputs = (Out("out"),)

    def __init__(self, fn: Callable[[Frame], object], tail: Sequence[Frame] = ()) -> None:
        super().__init__()
        self.fn = fn
        self.tail = list(tail)

    async def handle(self, port: str, frame: Frame) -> None:
        res = self.fn(frame)
        if res is None:
            return
        for f in [res] if isinstance(res, Frame) else res:  # type: ignore[union-attr]
            await self.send("out", f)

    async def run(self) -> None:
        await super().run()
        for f in self.tail:
            await self.send("out", f)


class Lifecycle(Actor):
    """Records start/stop into a shared journal; can fail in any phase."""

    inputs = (In("in", required=False),)
    outputs = (Out("out"),)

    def __init__(self, journal: list[str], fail_in: str = "", forever: bool = False) -> None:
        super().__init__()
        self.journal = journal
        self.fail_in = fail_in
        self.forever = forever

    async def start(self) -> None:
        self.journal.append(f"start {self.name}")
        if self.fail_in == "start":
            raise RuntimeError(f"{self.name} cannot start")

    async def run(self) -> None:
        if self.fail_in == "run":
            await anyio.sleep(0.001)
            raise RuntimeError(f"{self.name} broke")
        if self.forever:
            await anyio.sleep_forever()

    async def stop(self) -> None:
        self.journal.append(f"stop {self.name}")
        if self.fail_in == "stop":
            raise RuntimeError(f"{self.name} cannot stop")
