"""The offline demo: a front-desk agent answering a simulated Twilio call, with no account,
no API key and no network beyond loopback. ``voicegraph demo`` runs it."""

from .agent import GRAMMAR, GREETING, FrontDesk, ToolCallRecord
from .caller import CALLER_SCRIPT
from .options import DemoError, DemoOptions
from .record import CallRecord, TrackRecorder, write_stereo_wav
from .run import run_demo
from .tap import TranscriptTap, add_tap

__all__ = [
    "CALLER_SCRIPT",
    "GRAMMAR",
    "GREETING",
    "CallRecord",
    "DemoError",
    "DemoOptions",
    "FrontDesk",
    "ToolCallRecord",
    "TrackRecorder",
    "TranscriptTap",
    "add_tap",
    "run_demo",
    "write_stereo_wav",
]
