#!/usr/bin/env python
"""Download-stage throughput: images/s per core, fetch + decode + resize, against a loopback server.

    python bench/download.py [--n 600] [--image-size 256] [--threads 8] [--json out.json]

What it measures, in one run on the same source images (~500 KB JPEGs, distinct URLs):
  1. decode+resize only: curation.images.process_image on bytes in memory (TurboJPEG decode
     with DCT scaling in eighths, resize in torch as the job does when torch is installed; also
     with Pillow's resize, and with Pillow's draft-mode decoder, the fallback for what TurboJPEG
     does not read cleanly), cycling through the sources, and again over one separate copy per
     image (like fetched bodies, never cache-resident); plus fetching alone, so the pipeline can
     be compared with its parts;
  2. the same without DCT scaling (Pillow, full decode, then resize), to show what scaling buys,
     and with the sources saved as progressive JPEGs (a planning number for the web);
  2b. JPEG decoding at 1/8 scale alone: mostly the Huffman (entropy) decoding that no decoder
     can skip; its rate is the ceiling of 1 and 3 on this CPU;
  3. the task pipeline: curation.download_shards.download_records (curation.fetch thread pool + process_image
     + row building) fetching every URL from a ThreadingHTTPServer in a separate process, so the
     server's CPU is not counted;
  4. 1 and 3 again with the `box` (area-average) resize filter instead of the default bicubic;
  5. 1 and 3 with the perceptual hash off and on (config.phash, on by default: the job's rate is
     3 with it on), and the run-wide near-duplicate grouping (band rows, bucket check,
     components) on random hashes, per image.
Each measurement runs --repeat times, in rounds (one run of each per round, so that all of them
see the same spells of this machine's drifting speed), and reports the fastest (load from other
work only slows).
"Per core" = images / CPU seconds of this process (all threads), i.e. what one core sustains;
wall-clock rates are printed too. Goal: >= 100 images/s per core for 256-px output.
With two or more CPUs the server runs on the last one and this process on the others
(--no-pin: shared), as the web is not on the downloader's cores.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = str(Path(__file__).resolve().parents[1])
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import argparse  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import multiprocessing as mp  # noqa: E402
import os  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import simplejpeg  # noqa: E402
from PIL import Image  # noqa: E402

from curation.download_config import DownloadConfig  # noqa: E402
from curation.images import (  # noqa: E402
    _decode_pillow,
    encode_jpeg,
    process_image,
    resize_pixels,
    resolve_resizer,
    target_size,
)


def make_source(seed: int, width: int = 1920, height: int = 1440, quality: int = 90, noise: float = 5.0) -> bytes:
    """A photo-like JPEG of roughly 500 KB (a typical web photo: ~2.8 MP at ~1.4 bits/pixel).

    Smooth gradients plus seeded Gaussian grain (no global RNG); the grain sets the entropy,
    and entropy decoding is most of the decode cost once DCT scaling shrinks the IDCT.
    """
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    phase = rng.uniform(0, 6.28, size=3)
    base = np.stack([127 + 100 * np.sin(x / (60 + 20 * c) + y / 90 + phase[c]) for c in range(3)], -1)
    arr = np.clip(base + rng.normal(0, noise, size=base.shape), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr, "RGB").save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def progressive_copy(data: bytes, quality: int = 90) -> bytes:
    """The same picture as a progressive JPEG (libjpeg's default scan script)."""
    buf = io.BytesIO()
    Image.open(io.BytesIO(data)).save(buf, "JPEG", quality=quality, progressive=True)
    return buf.getvalue()


def _serve(sources: list[bytes], port_q) -> None:
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def do_GET(self):
            try:
                i = int(self.path.split("/")[2].split(".")[0])
                body = sources[i % len(sources)]
            except (IndexError, ValueError):
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    port_q.put(httpd.server_address[1])
    httpd.serve_forever()


def usable_cpus() -> list[int]:
    """The CPUs this process may run on (all of them where the OS cannot say)."""
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def split_cpus(pin: bool) -> tuple[set[int] | None, set[int] | None]:
    """(this process's CPUs, the server's CPU): the last CPU serves, the others measure.

    The loopback server stands in for the web, which does not run on the downloader's cores;
    sharing them, it preempts the measured threads and evicts their caches (measured here: a
    lower and far noisier rate). None, None when pinning is off or there is one CPU.
    """
    cpus = usable_cpus()
    if not pin or len(cpus) < 2 or not hasattr(os, "sched_setaffinity"):
        return None, None
    return set(cpus[:-1]), {cpus[-1]}


def pin_process(pid: int, cpus: set[int]) -> None:
    """Every thread of `pid` on `cpus` (threads started later inherit it)."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            os.sched_setaffinity(int(tid), cpus)
        except ProcessLookupError:  # a thread that ended meanwhile
            pass


def best_interleaved(measurements: dict, repeat: int) -> dict:
    """{name: fastest of `repeat` runs (per core)}, the runs taken in rounds (one of each measurement
    per round): this machine's speed drifts over minutes, and rounds give every measurement the
    same spells, so the ratios between them hold even when the absolute rates wander. Other load
    only ever slows a run down, hence the fastest."""
    runs: dict = {name: [] for name in measurements}
    for _ in range(repeat):
        for name, fn in measurements.items():
            runs[name].append(fn())
    out = {}
    for name, rs in runs.items():
        out[name] = max(rs, key=lambda r: r["per_core"])
        out[name]["per_core_all_runs"] = [r["per_core"] for r in rs]
    return out


def decode_rate(sources: list[bytes], n: int, size: int, draft: bool, resample: str = "bicubic",
                resizer: str = "auto", phash: bool = False) -> dict:
    resizer = resolve_resizer(resizer)
    cpu0, t0 = time.process_time(), time.perf_counter()
    for i in range(n):
        data = sources[i % len(sources)]
        if draft:
            img, reason = process_image(data, image_size=size, resample=resample, resizer=resizer, phash=phash)
            assert reason is None
        else:
            im = Image.open(io.BytesIO(data))
            im = im.convert("RGB").resize(target_size(*im.size, size), Image.Resampling.BICUBIC, reducing_gap=3.0)
            im.save(io.BytesIO(), "JPEG", quality=90)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - t0
    return {"images": n, "cpu_s": round(cpu, 3), "wall_s": round(wall, 3), "per_core": round(n / cpu, 1),
            "resizer": resizer if draft else "pillow"}


def pillow_decoder_rate(sources: list[bytes], n: int, size: int) -> dict:
    """process_image with Pillow's draft-mode decoder (its fallback) in place of TurboJPEG: same
    resize and encoder, so the difference is the decoder's."""
    resizer, cfg = resolve_resizer("auto"), DownloadConfig()
    cpu0 = time.process_time()
    for i in range(n):
        pixels, declared, reason = _decode_pillow(sources[i % len(sources)], size, cfg.max_image_pixels,
                                                  cfg.min_image_side)
        assert reason is None
        encode_jpeg(resize_pixels(pixels, target_size(*declared, size), cfg.resample, resizer), cfg.jpeg_quality)
    cpu = time.process_time() - cpu0
    return {"images": n, "cpu_s": round(cpu, 3), "per_core": round(n / cpu, 1), "resizer": resizer}


def entropy_floor_rate(sources: list[bytes], n: int) -> dict:
    """JPEG decoding at 1/8 scale and nothing else: little more than the Huffman decoding that every
    decode must do, whatever the output size. Its rate bounds any decode+resize rate on this CPU."""
    cpu0 = time.process_time()
    for i in range(n):
        simplejpeg.decode_jpeg(sources[i % len(sources)], colorspace="RGBX", fastdct=True, fastupsample=True,
                               min_height=1, min_width=1)  # the smallest scale: 1/8
    cpu = time.process_time() - cpu0
    return {"images": n, "cpu_s": round(cpu, 3), "per_core": round(n / cpu, 1)}


def fetch_only_rate(base: str, n: int) -> dict:
    """Fetching alone, one request at a time (bodies dropped): the CPU cost of the HTTP client."""
    from curation.fetch import Fetcher

    fetcher = Fetcher(DownloadConfig(allow_loopback=True, retries=0, total_timeout=60, read_timeout=30))
    try:
        fetcher.fetch(f"{base}/img/0.jpg")  # warm: connection, imports
        cpu0 = time.process_time()
        for i in range(n):
            if fetcher.fetch(f"{base}/img/{i}.jpg").body is None:
                raise RuntimeError(f"fetch {i} failed in the benchmark")
        cpu = time.process_time() - cpu0
    finally:
        fetcher.close()
    return {"images": n, "cpu_s": round(cpu, 3), "per_core": round(n / cpu, 1), "ms_per_image": round(cpu / n * 1e3, 3)}


def grouping_rate(n: int, max_distance: int = 4) -> dict:
    """The near-duplicate pass's CPU per image (curation.download_shards: band rows, the bucket's
    exact check and components, then the merge) on n random hashes with 1% planted near-copies."""
    from curation import download_shards as ds

    rng = np.random.default_rng(7)
    hashes = rng.integers(0, 2 ** 63, size=n, dtype=np.int64)
    copies = rng.choice(n, size=n // 100, replace=False)
    hashes[copies[1:]] = hashes[copies[:-1]] ^ np.int64(0b1011)  # 3 bits off another image
    keys = np.arange(n, dtype=np.int64)
    cpu0 = time.process_time()
    band, member, ph = ds.image_hash.band_rows(keys, hashes, max_distance)
    nodes, roots = ds.merge_components(ds.bucket_components([(0, (band, member, ph))], max_distance))
    cpu = time.process_time() - cpu0
    return {"images": n, "cpu_s": round(cpu, 3), "per_core": round(n / cpu, 1), "grouped": int(len(nodes))}


def fetch_rate(base: str, n: int, size: int, threads: int, resample: str = "bicubic", phash: bool = True) -> dict:
    from curation.download_shards import download_records

    cfg = DownloadConfig(allow_loopback=True, image_size=size, threads=threads, per_host_concurrency=threads,
                         decode_concurrency=len(usable_cpus()),  # one process here, not a task per core
                         total_timeout=60, read_timeout=30, retries=0, resample=resample, phash=phash,
                         near_duplicates=phash)
    records = [(f"u{i:06d}", f"{base}/img/{i}.jpg", [{"text": "x"}]) for i in range(n)]
    download_records(records[: threads * 2], cfg)  # warm: pools, imports
    cpu0, t0 = time.process_time(), time.perf_counter()
    rows, failures, info = download_records(records, cfg)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - t0
    if failures:
        raise RuntimeError(f"{len(failures)} fetches failed in the benchmark, e.g. {failures[:3]}")
    return {"images": len(rows), "cpu_s": round(cpu, 3), "wall_s": round(wall, 3), "per_core": round(len(rows) / cpu, 1),
            "wall_rate": round(len(rows) / wall, 1), "threads": threads,
            "mb_downloaded": round(info["bytes_downloaded"] / 1e6, 1)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=600, help="images per measurement")
    ap.add_argument("--image-size", type=int, default=256)
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--sources", type=int, default=8, help="distinct source images")
    ap.add_argument("--repeat", type=int, default=3, help="runs per measurement; the fastest is reported")
    ap.add_argument("--json", help="write the results here too")
    ap.add_argument("--no-pin", dest="pin", action="store_false",
                    help="let the loopback server share this process's CPUs (default: it gets the last CPU)")
    args = ap.parse_args(argv)

    sources = [make_source(s) for s in range(args.sources)]
    avg_kb = sum(map(len, sources)) / len(sources) / 1024
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    server = ctx.Process(target=_serve, args=(sources, q), daemon=True)
    server.start()
    client_cpus, server_cpus = split_cpus(args.pin)
    if server_cpus:
        pin_process(server.pid, server_cpus)
        pin_process(os.getpid(), client_cpus)
    try:
        port = q.get(timeout=60)
        base = f"http://127.0.0.1:{port}"
        # one copy per image, as fetched bodies are: not cache-resident when decoded
        distinct = [bytes(bytearray(sources[i % len(sources)])) for i in range(args.n)]
        progressive = [progressive_copy(src) for src in sources]
        n, size, few = args.n, args.image_size, max(args.n // 4, 20)
        decode_rate(sources, 16, size, draft=True)  # warm: torch's first resize, the decoders' libraries
        m = best_interleaved({
            "draft": lambda: decode_rate(sources, n, size, draft=True),
            "draft_cold": lambda: decode_rate(distinct, n, size, draft=True),
            "fetch_only": lambda: fetch_only_rate(base, n),
            "draft_pillow": lambda: decode_rate(sources, n, size, draft=True, resizer="pillow"),
            "pillow_decoder": lambda: pillow_decoder_rate(sources, n, size),
            "box": lambda: decode_rate(sources, n, size, draft=True, resample="box"),
            "floor": lambda: entropy_floor_rate(sources, n),
            "nodraft": lambda: decode_rate(sources, few, size, draft=False),
            "prog": lambda: decode_rate(progressive, few, size, draft=True),
            "fetched": lambda: fetch_rate(base, n, size, args.threads),
            "fetched_box": lambda: fetch_rate(base, n, size, args.threads, "box"),
            "draft_phash": lambda: decode_rate(sources, n, size, draft=True, phash=True),
            "fetched_nophash": lambda: fetch_rate(base, n, size, args.threads, phash=False),
        }, args.repeat)
        grouping = best_interleaved({"grouping": lambda: grouping_rate(200_000)}, args.repeat)["grouping"]
        distinct.clear()
        draft, draft_cold, fetch_only, draft_pillow = m["draft"], m["draft_cold"], m["fetch_only"], m["draft_pillow"]
        pillow_decoder, box, floor, nodraft, prog = m["pillow_decoder"], m["box"], m["floor"], m["nodraft"], m["prog"]
        fetched, fetched_box = m["fetched"], m["fetched_box"]
        draft_phash, fetched_nophash = m["draft_phash"], m["fetched_nophash"]
    finally:
        server.terminate()
        server.join(5)
    result = {
        "source_kb": round(avg_kb, 1),
        "source_px": list(Image.open(io.BytesIO(sources[0])).size),
        "image_size": args.image_size,
        "cpus": os.cpu_count(),
        "measuring_cpus": sorted(client_cpus) if client_cpus else None,  # None: not pinned
        "server_cpus": sorted(server_cpus) if server_cpus else None,
        "decode_resize_draft": draft,
        "decode_resize_draft_pillow": draft_pillow,
        "decode_resize_pillow_decoder": pillow_decoder,
        "decode_resize_draft_distinct_bodies": draft_cold,
        "fetch_only_serial": fetch_only,
        "fetch_plus_cold_decode_per_core": round(1 / (1 / draft_cold["per_core"] + 1 / fetch_only["per_core"]), 1),
        "decode_resize_no_draft": nodraft,
        "decode_resize_progressive_sources": prog,
        "entropy_decoding_floor": floor,
        "decode_resize_draft_box": box,
        "fetch_decode_resize": fetched,
        "fetch_decode_resize_box": fetched_box,
        "decode_resize_draft_phash": draft_phash,
        "fetch_decode_resize_no_phash": fetched_nophash,
        "near_duplicate_grouping": grouping,
        "ratio_phash_on_vs_off_decode": round(draft_phash["per_core"] / draft["per_core"], 3),
        "ratio_phash_on_vs_off_pipeline": round(fetched["per_core"] / fetched_nophash["per_core"], 3),
        "phash_cpu_ms_per_image": round(1e3 * (1 / draft_phash["per_core"] - 1 / draft["per_core"]), 3),
        "load_average": list(os.getloadavg()),
        "ratio_fetch_pipeline_vs_decode_only": round(fetched["per_core"] / draft["per_core"], 3),
        "ratio_draft_vs_no_draft": round(draft["per_core"] / nodraft["per_core"], 2),
        "goal_per_core": 100,
        "goal_met": fetched["per_core"] >= 100,
        "goal_met_box": fetched_box["per_core"] >= 100,
    }
    print(f"sources: {args.sources} JPEGs of {result['source_px'][0]}x{result['source_px'][1]}, ~{avg_kb:.0f} KB; "
          f"output shorter side {args.image_size}; "
          + (f"measured on CPU(s) {result['measuring_cpus']}, server on {result['server_cpus']}" if client_cpus
             else "server shares the CPUs"))
    print(f"  decode+resize              {draft['per_core']:>8.1f} images/s per core   (TurboJPEG, DCT-scaled; resize in "
          f"{draft['resizer']}; {draft_pillow['per_core']:.1f} with Pillow's resize, "
          f"{pillow_decoder['per_core']:.1f} with Pillow's draft decoder)")
    print(f"  decode+resize (distinct)   {draft_cold['per_core']:>8.1f} images/s per core   (one copy of the bytes per "
          "image, as fetched bodies are: no cache reuse across images)")
    print(f"  fetch only (serial)        {fetch_only['per_core']:>8.1f} images/s per core   "
          f"({fetch_only['ms_per_image']} ms CPU per image; with the line above: "
          f"{result['fetch_plus_cold_decode_per_core']} per core if the pipeline cost only its parts)")
    print(f"  JPEG entropy decoding only {floor['per_core']:>8.1f} images/s per core   (1/8-scale decode, no resize "
          "or encode: the ceiling of any rate above on this CPU)")
    print(f"  decode+resize (progressive){prog['per_core']:>8.1f} images/s per core   (the same pictures saved as "
          "progressive JPEGs, common on the web: every scan is decoded, scaled or not)")
    print(f"  decode+resize (full size)  {nodraft['per_core']:>8.1f} images/s per core   "
          f"(Pillow, no DCT scaling: scaling x{result['ratio_draft_vs_no_draft']})")
    print(f"  fetch+decode+resize        {fetched['per_core']:>8.1f} images/s per core   "
          f"({fetched['wall_rate']} images/s wall, {args.threads} threads; "
          f"{result['ratio_fetch_pipeline_vs_decode_only']:.2f} of decode-only)")
    print(f"  decode+resize (box)        {box['per_core']:>8.1f} images/s per core")
    print(f"  fetch+decode+resize (box)  {fetched_box['per_core']:>8.1f} images/s per core   "
          f"({fetched_box['wall_rate']} images/s wall)")
    print(f"  pHash on/off               {result['ratio_phash_on_vs_off_pipeline']:>8.3f} of the rate without   "
          f"(fetch+decode+resize {fetched['per_core']:.1f} vs {fetched_nophash['per_core']:.1f} per core; "
          f"decode+resize {result['ratio_phash_on_vs_off_decode']:.3f}: "
          f"{result['phash_cpu_ms_per_image']} ms CPU per image)")
    print(f"  near-duplicate grouping    {grouping['per_core']:>8.1f} images/s per core   (band rows, exact check, "
          f"components over {grouping['images']:,} hashes with 1% near-copies: the run-wide pass)")
    print(f"  goal >= 100 images/s per core: default (bicubic) {'met' if result['goal_met'] else 'NOT met'}, "
          f"box {'met' if result['goal_met_box'] else 'NOT met'}   (load average {os.getloadavg()[0]:.1f} on "
          f"{os.cpu_count()} CPUs: other work slows every rate here)")
    print(json.dumps(result, sort_keys=True))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=2, sort_keys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
