"""The chat agent: intents, the conversation state machine, and its MLflow ResponsesAgent."""
