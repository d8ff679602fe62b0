"""eval.json: what a finished run reports. Written by `detk8s exec`, read by `detk8s collect`."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

SCHEMA_VERSION = 1


class EvalRecord(BaseModel):
    """One run's result. Unknown keys are kept (newer writers), missing required ones invalid."""

    model_config = ConfigDict(extra="allow", protected_namespaces=())

    schema_version: int = SCHEMA_VERSION
    run: str
    framework: str
    model: str
    dataset: str
    train_fraction: str | None = None
    train_images: int | None = None
    gpus: int
    nodes: int
    batch_size: int
    lr: float
    epochs: int
    weights: str | None = Field(None, description="The checkpoint evaluated: best_model, ...")
    weights_epoch: int | None = Field(None, description="Epochs trained when it was saved.")
    metrics: dict[str, Any] = Field(default_factory=dict)
    map50: float | None = Field(None, description="mAP@0.5 in percent")
    map50_95: float | None = Field(None, description="COCO AP@[.5:.95] in percent")
    per_class: dict[str, float] = Field(
        default_factory=dict, description="AP@0.5 per class in percent, where reported"
    )
    fps: float | None = None
    metric_lines: list[str] = Field(
        default_factory=list, description="The lines of the evaluation's output parsed"
    )
    train_seconds: float
    eval_seconds: float | None = None
    image: str | None = None
    resumed_from: str | None = None
    checkpoint_errors: list[str] = Field(
        default_factory=list, description="Checkpoints that could not be stored, and why."
    )
    started: str
    finished: str
    exit_status: str = "succeeded"
    detk8s_version: str | None = None

    @property
    def gpu_hours(self) -> float:
        return self.gpus * self.nodes * self.train_seconds / 3600


class FailureRecord(BaseModel):
    """The FAILED marker's content."""

    model_config = ConfigDict(extra="allow")

    run: str
    reason: str
    exit_code: int | None = None
    finished: str | None = None
    log_tail: list[str] = Field(default_factory=list, description="The log's last lines.")
    checkpoint_errors: list[str] = Field(default_factory=list)
