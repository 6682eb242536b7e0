"""Settings of the image download stage (jobs/download.py): fetching, safety, image processing, sharding.

Defaults are what a polite, safe crawler of the open web should use; tests and benchmarks
override them (short timeouts, loopback allowed). One dataclass so that a run's manifest
records exactly the settings it used, and a JSON file or CLI flags (curation.config_cli, from
the field help texts below) can override any field.
"""

from __future__ import annotations

from dataclasses import dataclass

from curation import config_cli
from curation.config_cli import option

# band search (curation.image_hash) splits 64 bits into d + 1 bands: beyond 16 bits the bands are
# 3-4 bits wide and nearly every pair of images becomes a candidate
MAX_PHASH_DISTANCE = 16
DEFAULT_USER_AGENT = "worldclip-img-downloader/0.1 (MetaCLIP 2 data curation; respects per-host limits)"


@dataclass(frozen=True)
class DownloadConfig(config_cli.ConfigMixin):
    SECTION = "download"

    # --- HTTP ---
    user_agent: str = option(DEFAULT_USER_AGENT, help="User-Agent header of every request")
    connect_timeout: float = option(5.0, help="seconds to open a TCP (+TLS) connection")
    read_timeout: float = option(10.0, help="seconds of silence allowed between received bytes")
    total_timeout: float = option(30.0, aliases=("--timeout",),
                                  help="wall-clock cap of one attempt (headers + whole body), per hop")
    max_redirects: int = option(5, help="redirects followed (each hop is checked again)")
    max_bytes: int = option(16 * 1024 * 1024, help="response body cap, checked on Content-Length and while reading")
    retries: int = option(2, help="extra attempts after a transient failure (5xx, 429, timeout, reset)")
    backoff_base: float = option(0.5, help="seconds; attempt k waits base * 2**k * (0.5 + jitter), jitter from a hash")
    backoff_max: float = option(10.0, help="seconds; cap of one backoff wait")
    threads: int = option(32, help="concurrent fetches per Spark task")
    per_host_concurrency: int = option(4, aliases=("--per-host",),
                                       help="politeness: simultaneous requests to one host per task")
    decode_concurrency: int = option(1, help="images decoded at once per Spark task (a task holds one core): "
                                             "more only adds memory and context switches; fetching stays "
                                             "`threads`-wide")
    check_content_type: bool = option(True, help="refuse text/html etc. before reading the body")
    # --- safety ---
    # link-local (169.254/16 incl. cloud metadata), multicast, reserved and unspecified addresses
    # are always refused; so is any address that is not globally routable unless allowed here.
    allow_loopback: bool = option(False, help="allow 127.0.0.0/8 and ::1 (tests, local mirrors)")
    allow_private: bool = option(False, help="allow RFC 1918 / unique-local addresses (an intranet mirror)")
    # --- images ---
    image_size: int = option(256, help="shorter side of stored images (never upscaled; 224-px crops for training)")
    jpeg_quality: int = option(90, help="JPEG quality of stored images, 1-100")
    resample: str = option("bicubic", help="downscale filter: bicubic, bilinear, box (area average, fastest), lanczos")
    resizer: str = option("auto", help="who downscales: torch (vectorised, ~2x faster), pillow, or auto "
                                       "(torch when installed); the shard stats record which ran")
    max_image_pixels: int = option(40_000_000, help="declared width*height above this = decompression bomb")
    min_image_side: int = option(1, help="smaller images (tracking pixels) are rejected as too_small")
    # --- perceptual hashes, near-duplicates, decontamination ---
    phash: bool = option(True, help="compute each stored image's 64-bit perceptual hash from its resized pixels "
                                    "(_phash/ side tables; ~0.5 ms CPU per image); needed by near_duplicates and "
                                    "eval_images")
    near_duplicates: bool = option(True, help="group near-duplicate images of the run (pHashes within "
                                              "near_duplicate_distance bits) into _dedup/near_duplicates.parquet; "
                                              "recorded, not dropped")
    near_duplicate_distance: int = option(4, help="Hamming distance (bits of 64) up to which two images are "
                                                  "near-duplicates")
    eval_images: str = option("", help="folder of evaluation images (ImageNet-style class folders or any tree of "
                                       "images; local or s3://): downloaded images within eval_image_distance bits "
                                       "of one are rejected as eval_image")
    eval_image_distance: int = option(4, help="Hamming distance (bits of 64) up to which a downloaded image is a "
                                              "copy of an evaluation image")
    # --- job ---
    shard_size: int = option(10_000, help="target URLs per output shard (shards are by uuid hash)")
    row_group_size: int = option(1_000, help="Parquet row group size of the image shards")
    dedup: bool = option(True, help="drop exact duplicate images (same sha256) within the run, keep smallest uuid")
    crash_after_shard: int = option(-1, cli=False,
                                    help="testing hook: raise after this shard's Parquet is published (-1: off)")

    def __post_init__(self):
        if self.max_redirects < 0 or self.retries < 0:
            raise ValueError("max_redirects and retries must be >= 0")
        if self.threads < 1 or self.per_host_concurrency < 1 or self.decode_concurrency < 1:
            raise ValueError("threads, per_host_concurrency and decode_concurrency must be >= 1")
        if not 1 <= self.jpeg_quality <= 100:
            raise ValueError(f"jpeg_quality must be in [1, 100], got {self.jpeg_quality}")
        if self.resizer not in ("auto", "torch", "pillow"):
            raise ValueError(f"resizer must be auto, torch or pillow, got {self.resizer!r}")
        if self.resample not in ("bicubic", "bilinear", "box", "lanczos"):
            raise ValueError(f"resample must be bicubic, bilinear, box or lanczos, got {self.resample!r}")
        if self.image_size < 1 or self.shard_size < 1 or self.max_bytes < 1:
            raise ValueError("image_size, shard_size and max_bytes must be positive")
        if min(self.connect_timeout, self.read_timeout, self.total_timeout) <= 0:
            raise ValueError("timeouts must be positive")
        for name in ("near_duplicate_distance", "eval_image_distance"):
            if not 0 <= getattr(self, name) <= MAX_PHASH_DISTANCE:
                raise ValueError(f"{name} must be in [0, {MAX_PHASH_DISTANCE}], got {getattr(self, name)}")
        if not self.phash and (self.near_duplicates or self.eval_images):
            raise ValueError("near_duplicates and eval_images need phash (--phash), or turn them off "
                             "(--no-near-duplicates, no --eval-images)")


