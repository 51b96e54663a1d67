"""LLM clients implementing :class:`voicegraph.llm.LLM`."""

from __future__ import annotations

from .openai_chat import OpenAIChatLLM

__all__ = ["OpenAIChatLLM"]
