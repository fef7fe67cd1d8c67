"""adrag's data layer: photos in a volume -> Delta tables -> CLIP embeddings -> Milvus.

The Dagster code location is :mod:`adrag_assets.definitions`; everything else here is
plain Python that the assets, the CLI and the app share.
"""
