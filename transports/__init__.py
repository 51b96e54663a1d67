"""Carrier edges (installed as ``voicegraph.transports``)."""
