"""The image-gen service (retrieve, generate, write back) and the tool the agent calls."""
