"""The node library (installed as ``voicegraph.nodes``)."""
