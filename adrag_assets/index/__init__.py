"""The Milvus index: the client, the sync from the embeddings' change feed, and search."""
