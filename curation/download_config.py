"""Settings of the image download stage (jobs/download.py): fetching, safety, image processing, sharding.

Defaults are what a polite, safe crawler of the open web should use; tests and benchmarks
override them (short timeouts, loopback allowed). One dataclass so that a run's manifest
records exactly the settings it used, and a JSON file or CLI flags can override any field.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

DEFAULT_USER_AGENT = "worldclip-img-downloader/0.1 (MetaCLIP 2 data curation; respects per-host limits)"


@dataclass(frozen=True)
class DownloadConfig:
    # --- HTTP ---
    user_agent: str = DEFAULT_USER_AGENT
    connect_timeout: float = 5.0  # seconds to open a TCP (+TLS) connection
    read_timeout: float = 10.0  # seconds of silence allowed between received bytes
    total_timeout: float = 30.0  # wall-clock cap of one attempt (headers + whole body), per hop
    max_redirects: int = 5
    max_bytes: int = 16 * 1024 * 1024  # response body cap, checked on Content-Length and while reading
    retries: int = 2  # extra attempts after a transient failure (5xx, 429, timeout, reset)
    backoff_base: float = 0.5  # seconds; attempt k waits base * 2**k * (0.5 + jitter), jitter from a hash
    backoff_max: float = 10.0
    threads: int = 32  # concurrent fetches per Spark task
    per_host_concurrency: int = 4  # politeness: simultaneous requests to one host per task
    check_content_type: bool = True  # refuse text/html etc. before reading the body
    # --- safety ---
    allow_loopback: bool = False  # 127.0.0.0/8 and ::1 (tests, a local mirror)
    allow_private: bool = False  # RFC 1918 / unique-local ranges (an intranet mirror)
    # link-local (169.254/16 incl. cloud metadata), multicast, reserved and unspecified addresses
    # are always refused; so is any address that is not globally routable unless allowed above.
    # --- images ---
    image_size: int = 256  # shorter side after resize (never upscaled); 224-px crops for training
    jpeg_quality: int = 90
    resample: str = "bicubic"  # downscale filter: bicubic, bilinear, box (area average, fastest), lanczos
    max_image_pixels: int = 40_000_000  # declared width*height above this = decompression bomb
    min_image_side: int = 1  # smaller images (tracking pixels) are rejected as too_small
    # --- job ---
    shard_size: int = 10_000  # target URLs per output shard (shards are by uuid hash)
    row_group_size: int = 1_000
    dedup: bool = True  # drop exact duplicate images (same sha256) within the run, keep smallest uuid
    crash_after_shard: int = -1  # testing hook: raise after this shard's Parquet is published (-1: off)

    def __post_init__(self):
        if self.max_redirects < 0 or self.retries < 0:
            raise ValueError("max_redirects and retries must be >= 0")
        if self.threads < 1 or self.per_host_concurrency < 1:
            raise ValueError("threads and per_host_concurrency must be >= 1")
        if not 1 <= self.jpeg_quality <= 100:
            raise ValueError(f"jpeg_quality must be in [1, 100], got {self.jpeg_quality}")
        if self.resample not in ("bicubic", "bilinear", "box", "lanczos"):
            raise ValueError(f"resample must be bicubic, bilinear, box or lanczos, got {self.resample!r}")
        if self.image_size < 1 or self.shard_size < 1 or self.max_bytes < 1:
            raise ValueError("image_size, shard_size and max_bytes must be positive")
        if min(self.connect_timeout, self.read_timeout, self.total_timeout) <= 0:
            raise ValueError("timeouts must be positive")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "DownloadConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown download config keys: {unknown}")
        return cls(**d)

    @classmethod
    def from_json(cls, path: str) -> "DownloadConfig":
        with open(path, encoding="utf-8") as f:
            return cls.from_dict(json.load(f))

    def replace(self, **changes) -> "DownloadConfig":
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

