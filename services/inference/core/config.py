"""Inference knobs (env prefix ``SPOREPRINT_INFERENCE_``), served by a cached dependency tests can override."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.settings import SporeprintSettings


class InferenceSettings(SporeprintSettings):
    model_config = SettingsConfigDict(
        env_prefix="SPOREPRINT_INFERENCE_", env_ignore_empty=True, extra="ignore"
    )

    # Answers. The thresholds that decide an answer come from the served model's card (fitted on its validation
    # split by the training job: kNN threshold at 95% retention, temperature, uncertain_below); these override.
    top_k: int = Field(default=5, ge=1, le=100)
    uncertain_below: float | None = Field(
        default=None, ge=0, le=1,
        description="calibrated top probability under which we say uncertain (default: the model card's fitted value)",
    )
    relevance_gate: bool = Field(default=True, description="ask the relevance gate whether it is a photo of a fungus")
    irrelevant_above: float = Field(
        default=0.5, ge=0, le=1, description="gate irrelevant_score over which the photo is not a photo of a fungus"
    )
    probe_poll_interval_s: float = Field(default=30.0, gt=0, description="how often the relevance probe is re-read")

    # Dynamic batching
    max_batch_size: int = Field(default=16, ge=1, le=256)
    max_wait_ms: float = Field(default=5.0, ge=0, le=1000)

    # TensorFlow's threads for one model call. One batch runs at a time (the batcher's model thread), so the
    # remaining cores decode uploads and run the curator filter. With MobileNetV3-Small on 2 cores one thread
    # answers a single image in 3.5 ms where TF's default (all cores) takes 6.5 ms, and batches of 32 are no
    # slower (bench/results/serve.md). Raise it for big backbones on many cores.
    tf_intra_op_threads: int = Field(default=0, ge=0, description="0: half the CPUs the process may use (at least 1)")

    # Hot swap
    poll_interval_s: float = Field(default=5.0, gt=0)

    # Input limits
    max_upload_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    max_pixels: int = Field(default=40_000_000, ge=1024, description="refuse images with more pixels (bombs)")
    max_batch_files: int = Field(default=16, ge=1)
    max_observation_photos: int = Field(default=10, ge=1, description="photos one observation may have")

    # URL fetch (SSRF rules)
    allow_loopback_urls: bool = False
    url_timeout_s: float = Field(default=10.0, gt=0)
    url_max_redirects: int = Field(default=3, ge=0, le=10)

    # Where downloaded model files are kept while loading
    model_cache_dir: str = ""


@lru_cache
def get_inference_settings() -> InferenceSettings:
    return InferenceSettings()
