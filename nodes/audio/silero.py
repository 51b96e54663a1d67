"""Silero VAD (the ONNX model of the ``silero-vad`` wheel) on onnxruntime, without torch.

The ``silero-vad`` wheel ships the model file but its package imports torch, so the file is
located with ``importlib.util.find_spec`` (which does not execute the package) and run with
onnxruntime directly. Extra ``silero`` installs both.

The model takes 32 ms windows (256 samples at 8 kHz, 512 at 16 kHz) plus the last 32/64 samples
of the previous window as context, and carries a recurrent state; 20 ms frames are re-chunked.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np

from .analysers import require_rate

__all__ = ["SileroAnalyser", "silero_model_path"]

_INSTALL = "pip install 'voicegraph[silero]' (onnxruntime and silero-vad)"


def silero_model_path() -> Path:
    """Path of ``silero_vad.onnx`` inside the installed ``silero-vad`` wheel (not imported).

    Raises ``FileNotFoundError`` saying what to install when it is missing."""
    spec = importlib.util.find_spec("silero_vad")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"the silero-vad model is not installed; {_INSTALL}")
    for root in spec.submodule_search_locations:
        path = Path(root) / "data" / "silero_vad.onnx"
        if path.is_file():
            return path
    raise FileNotFoundError(f"silero-vad is installed but has no data/silero_vad.onnx; {_INSTALL}")


class SileroAnalyser:
    """Silero VAD probabilities per 32 ms window (see module docs).

    ``model_path``: an ONNX file (default: the one in the ``silero-vad`` wheel). One
    onnxruntime session per analyser, single-threaded: calls share cores by running more calls,
    not threads. Raises ``ImportError`` naming the extra when onnxruntime is missing."""

    name = "silero"

    def __init__(self, model_path: str | Path | None = None) -> None:
        try:
            import onnxruntime
        except ImportError as exc:
            raise ImportError(f"SileroAnalyser needs onnxruntime: {_INSTALL}") from exc
        path = Path(model_path) if model_path is not None else silero_model_path()
        opts = onnxruntime.SessionOptions()
        opts.inter_op_num_threads = 1
        opts.intra_op_num_threads = 1
        opts.log_severity_level = 3
        self._session = onnxruntime.InferenceSession(
            str(path), sess_options=opts, providers=["CPUExecutionProvider"]
        )
        self.model_path = path
        self.sample_rate = 8000
        self._window = 256
        self._context = 32
        self._sr = np.array(8000, dtype=np.int64)
        self._state = np.zeros((2, 1, 128), dtype=np.float32)
        self._buf = np.zeros(self._context, dtype=np.float32)  # context + pending samples

    def configure(self, sample_rate: int, sensitivity: str) -> None:
        require_rate("SileroAnalyser", sample_rate)
        self.sample_rate = sample_rate
        self._window = 512 if sample_rate == 16000 else 256
        self._context = 64 if sample_rate == 16000 else 32
        self._sr = np.array(sample_rate, dtype=np.int64)
        self._state = np.zeros((2, 1, 128), dtype=np.float32)
        self._buf = np.zeros(self._context, dtype=np.float32)

    def analyse(self, samples: np.ndarray[Any, Any]) -> list[tuple[float, float]]:
        buf = np.concatenate((self._buf, samples.astype(np.float32) * np.float32(1 / 32768)))
        ctx, w = self._context, self._window
        out: list[tuple[float, float]] = []
        start = 0
        run = self._session.run
        while buf.size - start >= ctx + w:
            x = buf[start : start + ctx + w].reshape(1, -1)
            prob, self._state = run(None, {"input": x, "state": self._state, "sr": self._sr})
            out.append((float(prob[0, 0]), 0.032))
            start += w
        self._buf = buf[start:].copy()
        return out
