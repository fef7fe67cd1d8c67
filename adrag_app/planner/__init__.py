"""Audience segment -> a pet proposal: built-in (offline) or an OpenAI-compatible LLM."""
