"""Writes for ingestion: accept an upload, process it in a parse and an embed stage, sweep
stuck documents, re-embed after a model change, delete. See each module's docstring."""

from ingestion.services.documents import (
    DEFAULT_COLLECTION,
    EMBED_STAGES,
    collection_get_or_create,
    document_create,
    document_delete,
    document_enqueue,
    document_fail,
    document_reingest,
    document_release,
    upload_check_limits,
)
from ingestion.services.maintenance import (
    ReembedResult,
    SweepResult,
    chunk_models_stale,
    chunk_reembed,
    chunk_reembed_enqueue,
    document_sweep,
)
from ingestion.services.processing import (
    LostClaim,
    StageTimeout,
    TransientIngestError,
    document_embed,
    document_parse,
    document_process,
    token_counter,
)

__all__ = [
    "DEFAULT_COLLECTION",
    "EMBED_STAGES",
    "LostClaim",
    "ReembedResult",
    "StageTimeout",
    "SweepResult",
    "TransientIngestError",
    "chunk_models_stale",
    "chunk_reembed",
    "chunk_reembed_enqueue",
    "collection_get_or_create",
    "document_create",
    "document_delete",
    "document_embed",
    "document_enqueue",
    "document_fail",
    "document_parse",
    "document_process",
    "document_reingest",
    "document_release",
    "document_sweep",
    "token_counter",
    "upload_check_limits",
]
