"""The project's own pipeline over the synthetic world: metadata build, curate, download, held-out set.

Each step runs the real job body (jobs/build_metadata.build, jobs/curate.run, jobs/download.run)
on one local SparkSession, with the job's own config dataclass; nothing here reimplements a
stage. The only stand-ins are the world's inputs:

- the metadata sources are the concept names written as Open Multilingual Wordnet tab files
  (World.write_wordnet_sources), the build's WordNet/OMW path; no Wikipedia dump is given;
- the alt-text pool is a url+text Parquet table (the LAION-style input of curation.inputs);
- its image URLs point at a ThreadingHTTPServer on 127.0.0.1 that draws each image when asked
  (the download job runs with allow_loopback, as its tests do).

A URL's port is part of its uuid, and every sampling decision hashes the uuid, so the server
listens on a fixed port (ReproduceConfig.port) for runs to be comparable; when that port is
taken it falls back to a free one and says so (the numbers then move within the seed spread).
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from curation.images import process_image, resolve_resizer
from curation.urls import image_uuid, normalize_url
from training.reproduce.world import World

POOL_FILES = 4  # input files of the curate job (its phase 1 runs one task per file)


# --- the image server --------------------------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address):  # a client that hung up: not worth a traceback
        pass


def _handler(world: World, shows: dict[str, int], served: list[int]):
    lock = threading.Lock()  # one handler thread per connection: the count is shared

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):  # noqa: N802 - http.server's name
            image_id = self.path.rsplit("/", 1)[-1].removesuffix(".png")
            if not self.path.startswith("/img/") or image_id not in shows:
                self.send_error(404)
                return
            body = world.render(image_id, shows[image_id])
            with lock:
                served[0] += 1
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):  # thousands of requests: no line each
            pass

    return Handler


def _bind(port: int) -> _Server | None:
    """A server on 127.0.0.1:port (0: any free port), its handler set later; None when the port is taken."""
    try:
        return _Server(("127.0.0.1", port), BaseHTTPRequestHandler)
    except OSError:
        return None


@contextmanager
def image_server(world: World, records: list[dict], port: int, log=print):
    """Serve /img/<image id>.png for the pool's images on 127.0.0.1; yields (base URL, served counter)."""
    shows = {r["image"]: r["shows"] for r in records}
    served = [0]
    srv = _bind(port) if port else None
    if srv is None:
        srv = _bind(0)
        if port:
            log(f"reproduce: port {port} is taken; serving on {srv.server_address[1]} instead "
                "(uuids, hence sampling draws, differ from a run on the default port)")
    srv.RequestHandlerClass = _handler(world, shows, served)
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}", served
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join(timeout=5)


# --- inputs ------------------------------------------------------------------------------------------


def write_pool(records: list[dict], base: str, root: Path, seed: int) -> dict[str, dict]:
    """The alt-text pool as url+text Parquet files (URL, TEXT: the LAION column names the curate
    job reads by default), in a seeded shuffled order; returns pool_truth."""
    root.mkdir(parents=True, exist_ok=True)
    order = np.random.default_rng([seed, 0xB001]).permutation(len(records))
    urls = [f"{base}/img/{records[i]['image']}.png" for i in order]
    texts = [records[i]["text"] for i in order]
    per = -(-len(urls) // POOL_FILES)
    for k in range(POOL_FILES):
        t = pa.table({"URL": urls[k * per:(k + 1) * per], "TEXT": texts[k * per:(k + 1) * per]})
        pq.write_table(t, root / f"part-{k:05d}.parquet")
    return pool_truth(records, base)


def pool_base(root: Path) -> str:
    """The server's base URL that a written pool's URLs carry."""
    url = pq.read_table(sorted(root.glob("*.parquet"))[0], columns=["URL"]).column("URL")[0].as_py()
    return url.rsplit("/img/", 1)[0]


def pool_truth(records: list[dict], base: str) -> dict[str, dict]:
    """uuid (the curate job's, of the normalised URL) -> what the image is and its texts' languages and kinds."""
    truth: dict[str, dict] = {}
    for r in records:
        url, _ = normalize_url(f"{base}/img/{r['image']}.png")
        u = image_uuid(url)
        t = truth.setdefault(u, {"image": r["image"], "concept": r["concept"], "shows": r["shows"], "langs": [],
                                 "kinds": []})
        t["langs"].append(r["lang"])
        t["kinds"].append(r["kind"])
    return truth


def build_session(app: str = "worldclip-reproduce"):
    """One local SparkSession for the three jobs (each job's local settings that matter here)."""
    from jobs import curate
    from jobs.common import build_spark

    return build_spark(app, None, conf={"spark.sql.shuffle.partitions": 4},
                       local_conf={**curate.LOCAL_SPARK_CONF, "spark.ui.enabled": "false",
                                   "spark.driver.memory": "2g"})


def build_metadata(spark, world: World, work: Path, log=print) -> dict:
    """jobs/build_metadata.build over the concept names as OMW tab files; returns its report."""
    from jobs import build_metadata as job
    from metadata.build import BuildInputs
    from metadata.config import MetadataConfig

    sources = world.write_wordnet_sources(work / "sources" / "wordnet")
    report = job.build(spark, BuildInputs(wordnet=sources), str(work / "metadata"), MetadataConfig(), progress=False)
    log(f"reproduce: metadata {report['version']}: {report['languages']} languages, {report['entries']} entries "
        f"({report['timings']['total_s']} s)")
    return report


def curate(spark, work: Path, t_en: int, seed: int, log=print, progress: bool = False) -> dict:
    """jobs/curate.run over the pool; returns its manifest."""
    from curation.curate_config import CurateConfig
    from jobs import curate as job

    cfg = CurateConfig(inputs=(str(work / "pool" / "*.parquet"),), metadata=str(work / "metadata"),
                       output=str(work / "curate"), input_format="parquet", t_en=int(t_en), seed=int(seed))
    return job.run(cfg, spark=spark, progress=log, show_progress=progress)


def download_config(image_size: int):
    from curation.download_config import DownloadConfig

    # loopback is the world's web; one host, so the per-host limit is the task's whole width
    return DownloadConfig(allow_loopback=True, image_size=image_size, threads=16, per_host_concurrency=16,
                          connect_timeout=5.0, read_timeout=10.0, total_timeout=20.0, retries=2,
                          backoff_base=0.05, backoff_max=0.5, shard_size=3000, row_group_size=500)


def download(spark, work: Path, image_size: int, log=print, progress: bool = False) -> dict:
    """jobs/download.run of curate/matched (every matched text of an image: online curation's input)."""
    from jobs import download as job

    return job.run(spark, str(work / "curate" / "matched"), str(work / "images"), download_config(image_size),
                   kind="matched", progress=progress, log=log)


def write_heldout(world: World, path: Path, image_size: int) -> int:
    """Held-out images through the download job's own image processing (curation.images), so they
    are shrunk and re-encoded exactly as the training images were."""
    cfg = download_config(image_size)
    resizer = resolve_resizer(cfg.resizer)
    concepts, images = [], []
    for c, png in world.heldout():
        img, reason = process_image(png, image_size=cfg.image_size, jpeg_quality=cfg.jpeg_quality,
                                    resample=cfg.resample, resizer=resizer)
        if img is None:
            raise RuntimeError(f"a held-out image of concept {c} did not process: {reason}")
        concepts.append(c)
        images.append(img.data)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"concept": pa.array(concepts, pa.int32()), "image": pa.array(images, pa.binary())}),
                   path)
    return len(images)


def entry_index(work: Path, world: World) -> dict[str, dict]:
    """Per language: each concept's entry id in the built metadata, its count in the curate job's
    counts/ (matched texts containing the entry) and the language's t from thresholds.json."""
    from curation.metadata_dir import MetadataDir

    md = MetadataDir(str(work / "metadata"))
    by: dict[str, dict[int, int]] = {}
    for r in pq.read_table(work / "curate" / "counts").to_pylist():
        by.setdefault(r["lang"], {})[int(r["entry_id"])] = int(r["count"])
    thresholds = json.loads((work / "curate" / "thresholds.json").read_text())["languages"]
    out = {}
    for lang in world.languages:
        t = md.entries_table(lang, columns=["entry_id", "entry"])
        ids = dict(zip(t.column("entry").to_pylist(), t.column("entry_id").to_pylist(), strict=True))
        cid = [ids.get(c.names[lang], -1) for c in world.concepts]
        out[lang] = {"entry_ids": cid, "counts": [by.get(lang, {}).get(i, 0) for i in cid],
                     "t": thresholds.get(lang, {}).get("t")}
    return out


def clear(path: Path) -> None:
    if path.exists():
        shutil.rmtree(path)


def timed(timings: dict, name: str, log=None):
    """A context manager that records the seconds of a step under `name` (and says so through `log`)."""

    @contextmanager
    def _t():
        t0 = time.time()
        yield
        timings[name] = round(time.time() - t0, 1)
        if log is not None:
            log(f"reproduce: phase {name} took {timings[name]} s")

    return _t()
