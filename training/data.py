"""Iterable dataset over Parquet image shards with the paper's online curation.

Units of work are (shard, row group) pairs. Each epoch the unit list is permuted with a
seed shared by every process, then dealt to the global workers (rank x DataLoader worker)
round-robin, so within an epoch no two workers read the same row; when there are fewer units
than workers, every worker reads all units and keeps every W-th row instead.

Online mode (DESIGN section 3, step 6): each epoch repeats the curate job's sampling
(curation.sampling.sample, the functions its offline sample uses) on the shards' `texts`
column: per image one matched text, kept with 1 - prod(1 - prob[lang][e]), all hashed on
(seed, uuid, epoch): the same sample for any partitioning. Offline mode reads the texts of a
curated/ table instead.

Each worker's stream is infinite (epoch after epoch) so every DDP rank can take the same
number of steps. Kept items pass a seeded shuffle buffer; every item carries
(worker, epoch, index) so the trainer can record the position of the last consumed batch
and a restarted worker skips exactly that many items (without decoding them).
"""

from __future__ import annotations

import io
import json
import logging
import os
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from PIL import Image
from torch.utils.data import IterableDataset, get_worker_info

from curation import balance, sampling, storage
from curation.layout import CurateOutput, ImagesOutput
from curation.schemas import ENTRY_IDS

log = logging.getLogger(__name__)
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


# what sampling reads of a text; rows may carry more keys (a MATCHED_TEXT dict), which are ignored
_SAMPLED_TEXTS = pa.list_(pa.struct([("lang", pa.string()), ("entry_ids", ENTRY_IDS)]))


def curate_rows(uuids: Sequence[str], texts_lists: Sequence[Sequence[dict] | None],
                probs_by_lang: dict[str, np.ndarray], seed: int, epoch: int) -> tuple[np.ndarray, np.ndarray]:
    """curation.sampling.sample for images held as Python rows: (picked text index, keep) per image.

    Only converts types; images without texts get index 0 and, like a picked text in a language
    without entry probabilities, are not kept.
    """
    texts = pa.array(texts_lists, _SAMPLED_TEXTS)
    rows, keep = sampling.sample(pa.array(uuids, pa.string()), texts, probs_by_lang=probs_by_lang, seed=seed,
                                 epoch=epoch)
    return np.maximum(rows - texts.offsets.to_numpy()[:-1], 0), keep


def parquet_file(path: str) -> pq.ParquetFile:
    """A local path or an s3:// URI (ranged reads through curation.storage) as a ParquetFile."""
    return pq.ParquetFile(storage.open_read(path) if storage.is_s3(path) else path)


def load_entry_probs(root: str | os.PathLike) -> dict[str, np.ndarray]:
    """entry_probs/<lang>.npy files (local or s3://; an s3:// curate output is read in the run its
    manifest names) -> {lang: float32 array} (no pickle)."""
    return {os.path.basename(uri)[:-len(".npy")]:
            np.load(io.BytesIO(storage.read_bytes(uri)), allow_pickle=False).astype(np.float32)
            for uri in storage.expand(CurateOutput.resolve(os.fspath(root)), suffix=".npy")}


def load_curated(root: str | os.PathLike) -> dict[str, tuple[str, str]]:
    """curated/ Parquet rows -> {uuid: (text, lang)} for offline mode."""
    out = {}
    for p in storage.expand(CurateOutput.resolve(os.fspath(root)), suffix=".parquet"):
        t = parquet_file(p).read(columns=["uuid", "text", "lang"])
        for u, x, lang in zip(*(t.column(c).to_pylist() for c in ("uuid", "text", "lang")), strict=True):
            out[u] = (x, lang)
    return out


def shard_sources(spec) -> dict[str, dict | None]:
    """What the shards of `spec` (directory, glob or list; local or s3://) were built from, per
    directory that holds some: the download job's record in that directory's _MANIFEST.json,
    {"source": "curated" | "matched" | ..., "curate_run": {...} | None}, or None where the directory
    has no manifest or one written before downloads recorded their source."""
    out: dict[str, dict | None] = {}
    for directory in sorted({p.rpartition("/")[0] for p in storage.expand(spec, suffix=".parquet")}):
        try:
            doc = json.loads(storage.read_bytes(storage.join(directory, ImagesOutput.MANIFEST)))
        except (FileNotFoundError, ValueError):  # none, or unreadable: nothing recorded
            doc = {}
        source = doc.get("source") if isinstance(doc, dict) else None
        out[directory] = {"source": source, "curate_run": doc.get("curate_run")} if source else None
    return out


REJECT_REASONS = ("not_sampled", "no_texts", "not_curated", "bad_image")


@dataclass
class _Item:
    uuid: str
    image: bytes
    text: str
    lang: str
    entry_ids: list


class ShardDataset(IterableDataset):
    """Curated (image, text) items from image shards; see the module docstring for the contract.

    transform(PIL image, rng) -> tensor and tokenizer(text) -> LongTensor are applied in the
    worker; with neither, items are raw dicts (uuid, text, lang, entry_ids) for inspection.
    """

    def __init__(self, shards, *, mode: str = "online", entry_probs: dict[str, np.ndarray] | None = None,
                 curated: dict[str, tuple[str, str]] | None = None, seed: int = 0, rank: int = 0,
                 world_size: int = 1, shuffle_buffer: int = 1000, transform=None, tokenizer=None,
                 positions: dict[int, tuple[int, int]] | None = None, worker_offset: int = 0,
                 start_epoch: int = 0, max_epochs: int | None = None, decode: bool = True):
        if mode not in ("online", "offline"):
            raise ValueError(f"mode must be 'online' or 'offline', not {mode!r}")
        if mode == "online" and entry_probs is None:
            raise ValueError("online curation needs entry_probs")
        if mode == "offline" and curated is None:
            raise ValueError("offline mode needs the curated/ texts")
        # `_`-prefixed side files (a download's _failed/, _dedup/) are not shards: storage.expand skips them
        self.paths = storage.expand(shards, suffix=".parquet")
        self.mode, self.entry_probs, self.curated = mode, entry_probs, curated
        self.seed, self.rank, self.world_size = int(seed), int(rank), int(world_size)
        self.shuffle_buffer = max(1, int(shuffle_buffer))
        self.transform, self.tokenizer, self.decode = transform, tokenizer, decode
        self.positions = dict(positions or {})
        self.worker_offset = int(worker_offset)
        self.start_epoch, self.max_epochs = int(start_epoch), max_epochs
        self.units = [(p, rg) for p in self.paths for rg in range(parquet_file(p).num_row_groups)]
        self.rejects: Counter = Counter()

    # --- layout -------------------------------------------------------------------------------

    def worker_layout(self) -> tuple[int, int]:
        """(global worker id, number of global workers) of the calling process/worker."""
        info = get_worker_info()
        nw, wid = (info.num_workers, info.id) if info is not None else (1, 0)
        logical = (wid + self.worker_offset) % nw
        return self.rank * nw + logical, self.world_size * nw

    def epoch_units(self, epoch: int, gw: int, n_workers: int) -> tuple[list[tuple[str, int]], int | None]:
        """This worker's (shard, row group) units for an epoch and the row stride filter, if any."""
        perm = np.random.default_rng([self.seed, epoch, 0x5EED]).permutation(len(self.units))
        ordered = [self.units[i] for i in perm]
        if len(ordered) >= n_workers:
            return ordered[gw::n_workers], None
        return ordered, gw

    # --- the stream -----------------------------------------------------------------------------

    def _rows(self, epoch: int, gw: int, n_workers: int) -> Iterator[_Item]:
        units, stride_id = self.epoch_units(epoch, gw, n_workers)
        counter = 0
        for path, rg in units:
            cols = ["uuid", "texts", "image"] if self.mode == "online" else ["uuid", "image"]
            t = parquet_file(path).read_row_group(rg, columns=cols)
            uuids = t.column("uuid").to_pylist()
            idx = list(range(len(uuids)))
            if stride_id is not None:
                idx = [i for i in idx if (counter + i) % n_workers == stride_id]
                counter += len(uuids)
            if not idx:
                continue
            if self.mode == "online":
                for batch in (t if stride_id is None else t.take(idx)).to_batches():
                    yield from self._sampled(batch, epoch)
            else:
                images = t.column("image").to_pylist()
                for i in idx:
                    hit = self.curated.get(uuids[i])
                    if hit is None:
                        self.rejects["not_curated"] += 1
                        continue
                    yield _Item(uuids[i], images[i], hit[0], hit[1], [])

    def _sampled(self, batch: pa.RecordBatch, epoch: int) -> Iterator[_Item]:
        """The images of a batch (uuid, texts, image) that this epoch's sampling keeps, in order."""
        texts = batch.column("texts")
        rows, keep = sampling.sample(batch.column("uuid"), texts, probs_by_lang=self.entry_probs, seed=self.seed,
                                     epoch=epoch)
        kept = pa.array(np.flatnonzero(keep))
        chosen = texts.values.take(pa.array(rows[keep]))
        items = zip(batch.column("uuid").take(kept).to_pylist(), batch.column("image").take(kept).to_pylist(),
                    chosen.field("text").to_pylist(), chosen.field("lang").to_pylist(),
                    chosen.field("entry_ids").to_pylist(), strict=True)
        for i in range(batch.num_rows):
            if not keep[i]:
                self.rejects["no_texts" if rows[i] < 0 else "not_sampled"] += 1
                continue
            uuid, image, text, lang, ids = next(items)
            yield _Item(uuid, image, text, lang, ids or [])

    def _shuffled(self, epoch: int, gw: int, n_workers: int) -> Iterator[_Item]:
        rng = np.random.default_rng([self.seed, epoch, gw, 0xB0FF])
        buf: list[_Item] = []
        for item in self._rows(epoch, gw, n_workers):
            if len(buf) < self.shuffle_buffer:
                buf.append(item)
                continue
            j = int(rng.integers(len(buf)))
            buf[j], item = item, buf[j]
            yield item
        while buf:
            j = int(rng.integers(len(buf)))
            buf[j], buf[-1] = buf[-1], buf[j]
            yield buf.pop()

    def _materialise(self, item: _Item, epoch: int) -> dict | None:
        if not self.decode:
            return {"uuid": item.uuid, "text": item.text, "lang": item.lang, "entry_ids": item.entry_ids}
        try:
            img = Image.open(io.BytesIO(item.image))
            img.load()
        except Exception:  # corrupt bytes: counted, skipped
            self.rejects["bad_image"] += 1
            n = self.rejects["bad_image"]
            if n & (n - 1) == 0:
                log.warning("skipped %d undecodable images (latest uuid %s)", n, item.uuid)
            return None
        out = {"uuid": item.uuid}
        if self.transform is not None:
            key = int(balance.uuid_keys([item.uuid])[0])
            out["image"] = self.transform(img, np.random.default_rng([self.seed, epoch, key, 0xC0]))
        else:
            out["image"] = img
        out["text"] = self.tokenizer.encode(item.text) if self.tokenizer is not None else item.text
        return out

    def __iter__(self) -> Iterator[dict]:
        gw, n_workers = self.worker_layout()
        epoch, skip = self.positions.get(gw, (self.start_epoch, 0))
        counted = Counter()  # rejects already attributed to a yielded item
        while self.max_epochs is None or epoch < self.start_epoch + self.max_epochs:
            produced = 0
            for index, item in enumerate(self._shuffled(epoch, gw, n_workers)):
                produced += 1
                if index < skip:
                    counted = Counter(self.rejects)  # a resumed run does not count the skipped part again
                    continue
                out = self._materialise(item, epoch)
                if out is None:
                    continue
                # rows dropped since the previous item ride along, so the trainer can report
                # records in / out / rejected by reason for exactly the data it consumed
                out.update(worker=gw, epoch=epoch, index=index,
                           dropped=torch.tensor([self.rejects[r] - counted[r] for r in REJECT_REASONS]))
                counted = Counter(self.rejects)
                yield out
            if produced == 0:
                raise RuntimeError(f"global worker {gw} of {n_workers} got no items in epoch {epoch}: "
                                   "too few rows/row groups for this many ranks x workers, or nothing kept")
            epoch, skip = epoch + 1, 0


def positions_from_batch(batch: dict) -> dict[int, tuple[int, int]]:
    """{worker: (epoch, next index)} after consuming a collated batch (one worker per batch)."""
    out: dict[int, tuple[int, int]] = {}
    for w, e, i in zip(batch["worker"].tolist(), batch["epoch"].tolist(), batch["index"].tolist(), strict=True):
        cur = out.get(w)
        if cur is None or (e, i + 1) > cur:
            out[w] = (e, i + 1)
    return out


def build_loader(dataset: ShardDataset, batch_size: int, num_workers: int, steps_done: int = 0,
                 pin_memory: bool = False) -> torch.utils.data.DataLoader:
    """DataLoader whose worker k plays logical worker (k + steps_done) % num_workers.

    DataLoader takes batches from its workers round-robin, so after steps_done batches the next
    one must come from logical worker steps_done % num_workers; rotating the mapping keeps the
    batch sequence of a resumed run identical to an uninterrupted one.
    """
    nw = max(0, int(num_workers))
    dataset.worker_offset = steps_done % nw if nw > 0 else 0
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, num_workers=nw, pin_memory=pin_memory,
                                       persistent_workers=False, prefetch_factor=4 if nw else None)
