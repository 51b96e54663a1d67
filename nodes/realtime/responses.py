"""When an OpenAI Realtime node may ask the model for a response, and for which.

The service refuses a ``response.create`` while a response is in progress, and a tool call's
follow-up must wait until every call of the response has its output. :class:`ResponseQueue`
keeps that state: the response in progress (or requested), the tool calls awaiting output,
whether outputs were sent since, and the :class:`~voicegraph.frames.Say` requests waiting their
turn (bounded). It decides the next ``response.create`` and remembers which response a Say
asked for, so that response's message plays under the Say's utterance id.
"""

from __future__ import annotations

from collections import deque

from voicegraph.frames import Say

from . import messages as m

__all__ = ["ResponseQueue"]


class ResponseQueue:
    """One response at a time: a tool follow-up first, then Say requests in order.

    Nothing here sends; the node sends what :meth:`next_request` and :meth:`request` return."""

    __slots__ = (
        "active",
        "calls_pending",
        "max_says",
        "outputs_sent",
        "requested",
        "says",
        "_say_response",
        "_say_uid",
    )

    def __init__(self, max_says: int = 8) -> None:
        self.max_says = max_says
        self.active: str | None = None
        """The id of the response the service is producing (``None``: none)."""
        self.requested = False
        """A ``response.create`` went out and its ``response.created`` has not come yet."""
        self.calls_pending: set[str] = set()
        """Tool calls of the response still waiting for their output."""
        self.outputs_sent = False
        """Tool outputs were sent that the model has not answered yet."""
        self.says: deque[Say] = deque()
        self._say_uid: int | None = None  # utterance id of the Say just requested
        self._say_response: tuple[str, int] | None = None  # (response id, Say's utterance id)

    def new_session(self) -> None:
        """The service started a new session (after a reconnect): whatever was in progress is
        gone. Waiting Say requests stay."""
        self.active = None
        self.requested = False
        self.calls_pending.clear()
        self.outputs_sent = False

    def say(self, say: Say) -> bool:
        """Queue ``say``; returns False when the oldest waiting one was dropped for it."""
        dropped = len(self.says) >= self.max_says
        if dropped:
            self.says.popleft()
        self.says.append(say)
        return not dropped

    def request(self, instructions: str | None) -> m.ResponseCreate:
        """A ``response.create`` (with ``instructions`` for this response only), now requested."""
        self.requested = True
        params = m.ResponseParams(instructions=instructions) if instructions else None
        return m.ResponseCreate(response=params)

    def next_request(self) -> m.ResponseCreate | None:
        """The ``response.create`` to send now, if any: none while a response is requested or
        in progress or a tool call lacks its output; else the follow-up of sent tool outputs,
        else the oldest Say."""
        if self.calls_pending or self.active is not None or self.requested:
            return None
        if self.outputs_sent:
            self.outputs_sent = False
            return self.request(None)
        if self.says:
            say = self.says.popleft()
            self._say_uid = say.utterance_id or None
            return self.request(f"Say exactly this, nothing else: {say.text}")
        return None

    def created(self, response_id: str) -> None:
        """The service started response ``response_id``."""
        self.active = response_id
        if self.requested and self._say_uid is not None:
            # the response we asked for with a Say: its message takes the Say's utterance id
            self._say_response, self._say_uid = (response_id, self._say_uid), None
        self.requested = False

    def done(self, response_id: str) -> None:
        """Response ``response_id`` is over (completed, cancelled or failed)."""
        if self.active in (None, response_id):
            self.active = None
        self.requested = False

    def utterance_for(self, response_id: str) -> int | None:
        """The utterance id a message item of ``response_id`` must play as (a Say's), once;
        ``None``: the next utterance id."""
        if self._say_response is not None and response_id == self._say_response[0]:
            uid, self._say_response = self._say_response[1], None
            return uid
        return None
