"""The three pipeline modes as graph-building functions.

``managed(...)``, ``cascading(...)`` and ``realtime(...)`` each return a :class:`Graph`: a value
to inspect (``to_mermaid()``), modify (``insert``, ``replace``) and run. ``CallInterface``
uses exactly these through :func:`build_for_session`. Node names are stable, so code and docs
can refer to them: ``carrier_in``, ``decode``, ``vad``, ``stt``, ``turns``, ``barge_in``,
``agent``, ``tts``, ``playout``, ``carrier_out``, ``call_end`` (cascading); ``carrier_in``,
``model``, ``barge_in``, ``supervisor``, ``playout``, ``carrier_out``, ``call_end`` (realtime);
``carrier_in``, ``agent``, ``carrier_out``, ``call_end`` (managed).

Formats avoid needless conversion: Twilio µ-law 8 kHz goes to an STT that takes µ-law as is and
is decoded once for the VAD; Plivo's 16 kHz PCM goes to the VAD and STT untouched. Where a
provider's port pins another format, a converter is inserted on that edge only (visible in the
graph as ``<src>_to_<dst>_convert``).

One module per preset (``cascading_graph``, ``realtime_graph``, ``managed_graph``), the
per-call choice among them (``for_session``), stand-in carriers for looking at a preset
(``stand_ins``) and what they share (``_shared``); every public name is re-exported here.
"""

from __future__ import annotations

from ._shared import Interruptible, Sensitivity
from .cascading_graph import cascading
from .for_session import build_for_session
from .managed_graph import managed
from .realtime_graph import realtime, realtime_model_for
from .stand_ins import StandInCarrier, sketch, stand_in_carrier

__all__ = [
    "Interruptible",
    "Sensitivity",
    "StandInCarrier",
    "build_for_session",
    "cascading",
    "managed",
    "realtime",
    "realtime_model_for",
    "sketch",
    "stand_in_carrier",
]
