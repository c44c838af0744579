"""Obliteration judges, registered by name: rules (base), embedding, llm."""
