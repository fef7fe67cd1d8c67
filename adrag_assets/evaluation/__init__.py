"""Retrieval quality over the labelled photos: zero-shot CLIP accuracy and text-to-photo
precision per search mode, computed for one encoder's vectors and collection."""
