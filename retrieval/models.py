# Retrieval reads ingestion.Chunk; it owns no tables yet.
