from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from pgvector.django import HnswIndex, VectorField


class Collection(models.Model):
    """A knowledge base. Every document belongs to exactly one.

    Who may read it: the users and groups granted here, every signed-in user when it is public
    (and anonymous visitors too when RAGAPP_ANONYMOUS_CHAT is on), and admins always.
    """

    slug = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=200)
    public = models.BooleanField(
        default=False,
        help_text="readable by every signed-in user (and by anonymous visitors when anonymous "
        "chat is on)",
    )
    users = models.ManyToManyField(
        settings.AUTH_USER_MODEL, blank=True, related_name="collections", help_text="may read it"
    )
    groups = models.ManyToManyField(
        "auth.Group", blank=True, related_name="collections", help_text="whose members may read it"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.name


class Document(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued"
        PROCESSING = "processing"
        READY = "ready"
        FAILED = "failed"

    class Stage(models.TextChoices):
        STORED = "stored"
        PARSED = "parsed"
        CHUNKED = "chunked"
        EMBEDDED = "embedded"
        INDEXED = "indexed"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    parent = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="attachments",
        help_text="the e-mail this file was attached to",
    )
    collection = models.ForeignKey(Collection, on_delete=models.PROTECT, related_name="documents")
    title = models.CharField(max_length=300)
    file = models.FileField(upload_to="documents/%Y/%m/")
    original_name = models.CharField(max_length=300)
    content_type = models.CharField(max_length=100, blank=True)
    size_bytes = models.BigIntegerField(default=0)
    content_hash = models.CharField(max_length=64, help_text="sha256 of the file's bytes")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    stage = models.CharField(max_length=16, choices=Stage.choices, default=Stage.STORED)
    progress_done = models.PositiveIntegerField(default=0)
    progress_total = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    attempts = models.PositiveSmallIntegerField(default=0, help_text="deliveries so far")
    # Set when a worker claims the document; only that worker may publish its chunks.
    claim_token = models.UUIDField(null=True, blank=True, editable=False)
    page_count = models.PositiveIntegerField(default=0)
    stage_seconds = models.JSONField(
        default=dict, blank=True, help_text="seconds each stage took: parse, chunk, embed, index"
    )
    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["collection", "content_hash"], name="document_unique_content"
            )
        ]
        indexes = [models.Index(fields=["status", "updated_at"])]

    def __str__(self) -> str:
        return self.title

    @property
    def is_final(self) -> bool:
        return self.status in {self.Status.READY, self.Status.FAILED}

    @property
    def progress_unit(self) -> str:
        """What `progress_done` counts: pages while parsing, chunks while embedding."""
        return "pages" if self.stage == self.Stage.STORED else "chunks"


class Chunk(models.Model):
    """A passage of a document: what retrieval finds and what an answer cites."""

    document = models.ForeignKey(Document, on_delete=models.CASCADE, related_name="chunks")
    index = models.PositiveIntegerField()
    text = models.TextField()
    page = models.PositiveIntegerField(null=True, blank=True)
    heading = models.CharField(max_length=500, blank=True)
    token_count = models.PositiveIntegerField(default=0)
    embedding = VectorField(dimensions=settings.RAGAPP_EMBEDDING_DIM)
    embedding_model = models.CharField(max_length=200)
    flagged = models.BooleanField(default=False, help_text="carries text aimed at the model")
    flag_reason = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["document", "index"]
        constraints = [
            models.UniqueConstraint(fields=["document", "index"], name="chunk_unique_index")
        ]
        indexes = [
            # Finds chunks of another model (after a model change) without reading every chunk.
            models.Index(fields=["embedding_model", "id"], name="chunk_model_id"),
            HnswIndex(
                name="chunk_embedding_hnsw",
                fields=["embedding"],
                m=16,
                ef_construction=64,
                opclasses=["vector_cosine_ops"],
            ),
        ]

    def __str__(self) -> str:
        return f"{self.document_id}#{self.index}"


class PendingChunk(models.Model):
    """A chunk not yet published: the staging area between the parse and the embed stage.

    The parse stage writes the drafts without vectors; the embed stage fills in vectors batch
    by batch, so a run that is killed resumes with only the missing ones; publishing copies
    them into `Chunk` in one transaction.
    """

    document = models.ForeignKey(Document, on_delete=models.CASCADE, related_name="+")
    index = models.PositiveIntegerField()
    text = models.TextField()
    page = models.PositiveIntegerField(null=True, blank=True)
    heading = models.CharField(max_length=500, blank=True)
    token_count = models.PositiveIntegerField(default=0)
    embedding = VectorField(dimensions=settings.RAGAPP_EMBEDDING_DIM, null=True)
    embedding_model = models.CharField(max_length=200, blank=True, default="")
    flagged = models.BooleanField(default=False)
    flag_reason = models.CharField(max_length=200, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["document", "index"], name="pending_chunk_unique_index")
        ]

    def __str__(self) -> str:
        return f"{self.document_id}#{self.index} (pending)"
