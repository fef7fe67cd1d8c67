"""adrag's user-facing application layer (ad generation and the app around it)."""
