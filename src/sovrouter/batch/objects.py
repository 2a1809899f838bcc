"""The objects of the OpenAI Files and Batch APIs as this gateway stores and returns them (:mod:`.service`)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field, StringConstraints

from sovrouter.contracts import DataClass

BatchStatus = Literal["validating", "failed", "in_progress", "finalizing", "completed", "expired", "cancelling",
                      "cancelled"]
BatchEnd = Literal["completed", "cancelled", "failed", "expired"]


class FileObject(BaseModel):
    id: str
    object: Literal["file"] = "file"
    bytes: int
    created_at: int
    filename: str
    purpose: Literal["batch", "batch_output"]
    status: Literal["processed"] = "processed"
    expires_at: int | None = None


class ExpiresAfter(BaseModel):
    """OpenAI's ``expires_after`` (files) and ``output_expires_after`` (batches): delete the file this many seconds
    after it was created (1 hour to 30 days)."""

    anchor: Literal["created_at"]
    seconds: int = Field(ge=3600, le=2_592_000)


class RequestCounts(BaseModel):
    total: int = 0
    completed: int = 0
    failed: int = 0


class BatchError(BaseModel):
    code: str
    message: str
    line: int | None = None
    param: str | None = None


class BatchErrors(BaseModel):
    object: Literal["list"] = "list"
    data: list[BatchError] = Field(default_factory=list)


class BatchObject(BaseModel):
    id: str
    object: Literal["batch"] = "batch"
    endpoint: str
    errors: BatchErrors | None = None
    input_file_id: str
    completion_window: str
    status: BatchStatus
    output_file_id: str | None = None
    error_file_id: str | None = None
    created_at: int
    in_progress_at: int | None = None
    expires_at: int
    finalizing_at: int | None = None
    completed_at: int | None = None
    failed_at: int | None = None
    cancelling_at: int | None = None
    cancelled_at: int | None = None
    expired_at: int | None = None
    request_counts: RequestCounts = RequestCounts()
    metadata: dict[str, str] | None = None
    data_class: DataClass = Field(default="public", exclude=True)
    output_expires_s: int | None = Field(default=None, exclude=True)  # output_expires_after, kept for the finish
    key_sha256: str | None = Field(default=None, exclude=True)  # the creating key's digest (None: stored before)


class CreateBatch(BaseModel):
    """The body of ``POST /v1/batches``."""

    input_file_id: str = Field(min_length=1, max_length=200)
    endpoint: str
    completion_window: str
    # as OpenAI's: at most 16 pairs, keys up to 64 characters, values up to 512
    metadata: dict[Annotated[str, StringConstraints(max_length=64)],
                   Annotated[str, StringConstraints(max_length=512)]] | None = Field(default=None, max_length=16)
    output_expires_after: ExpiresAfter | None = None
