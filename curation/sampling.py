"""One epoch of the paper's sampling (DESIGN step 5), the one implementation for the curate job and training.

Per image: pick one of its texts (in matched/ order) at balance.pick_index(uuid, n, seed, epoch),
then keep the image with Bernoulli(1 - prod(1 - prob[lang][e])) over the picked text's entries
(balance.keep_decisions). The curate job draws epoch 0 as the offline sample (curated/); training
repeats the same step every epoch (online curation), and DESIGN says it repeats it exactly, so
both call these functions: there is no second copy that could drift (there was one, and it
disagreed on a language without entry probabilities). Both read the same Arrow column, `texts`
(list<MATCHED_TEXT>, in matched/ and in the image shards), and work on its values and offsets:
no Python object per text in a Spark task or a DataLoader worker.

A picked text in a language without entry probabilities is not kept (keep probability 0), like a
text without entries and an image without texts: training may read shards with languages its
entry_probs/ lacks. The curate job computes probabilities for every metadata language, so there a
missing one is a bug upstream, and it says so (`require_probabilities`) instead of dropping images.

The pick needs no probabilities, so the curate job picks while grouping (`pick_texts`, stored)
and keeps later (`keep_picked`); `curate_batches` does both at once, and `sample` is training's
form: per image the picked text's row and the keep decision.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curation import balance
from curation.schemas import CURATED


def _lengths(lists: pa.ListArray) -> np.ndarray:
    """Each list's length from its offsets (relative to `lists.values`, also for a sliced array); 0 for null."""
    n = np.diff(lists.offsets.to_numpy())
    if lists.null_count:
        n[~lists.is_valid().to_numpy(zero_copy_only=False)] = 0
    return n


def pick_rows(uuids: pa.Array, texts: pa.ListArray, seed: int, epoch: int = 0) -> np.ndarray:
    """Per image, the row in `texts.values` of the text it offers this epoch (the
    balance.pick_index-th of its texts); -1 for an image without texts."""
    n = _lengths(texts)
    rows = texts.offsets.to_numpy()[:-1] + balance.pick_index(uuids.to_pylist(), n, seed, epoch)
    return np.where(n > 0, rows, -1)


def keep_mask(uuids: pa.Array, langs: pa.Array, entry_ids: pa.ListArray, probs_by_lang: Mapping[str, np.ndarray],
              seed: int, epoch: int = 0) -> np.ndarray:
    """Per picked text (of image `uuids[i]`), whether this epoch keeps it: keep probability
    1 - prod(1 - probs_by_lang[lang][e]) over its unique entries; 0 without entries or without
    probabilities for its language."""
    keep_probs = np.zeros(len(uuids), dtype=np.float64)
    if len(uuids):
        enc = pc.dictionary_encode(langs)
        codes = enc.indices.to_numpy(zero_copy_only=False)
        id_starts, id_lengths = entry_ids.offsets.to_numpy()[:-1], _lengths(entry_ids)
        id_values = entry_ids.values.to_numpy(zero_copy_only=False)
        for code, lang in enumerate(enc.dictionary.to_pylist()):
            probs = probs_by_lang.get(lang)
            if probs is None:
                continue
            members = np.flatnonzero(codes == code)
            starts, lengths = id_starts[members], id_lengths[members]
            # the ids of the members' lists, in order: start of each list repeated + position in it
            pos = np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths)
            keep_probs[members] = balance.keep_probabilities_flat(id_values[np.repeat(starts, lengths) + pos],
                                                                  lengths, probs)
    return balance.keep_decisions(uuids.to_pylist(), keep_probs, seed, epoch)


def _chosen(texts: pa.ListArray, rows: np.ndarray) -> tuple[np.ndarray, pa.StructArray]:
    """(which images have a text, the picked texts of those images) for pick_rows' rows."""
    has = rows >= 0
    return has, texts.values.take(pa.array(rows[has], pa.int64()))


def sample(uuids: pa.Array, texts: pa.ListArray, *, probs_by_lang: Mapping[str, np.ndarray], seed: int,
           epoch: int) -> tuple[np.ndarray, np.ndarray]:
    """One epoch for a batch of images, as training uses it: (pick_rows, kept) per image.

    The same decisions as curate_batches: an image is in its output iff kept here, with the text
    at `texts.values[rows[i]]`.
    """
    rows = pick_rows(uuids, texts, seed, epoch)
    has, chosen = _chosen(texts, rows)
    keep = np.zeros(len(rows), dtype=bool)
    if has.any():
        keep[has] = keep_mask(uuids.filter(pa.array(has)), chosen.field("lang"), chosen.field("entry_ids"),
                              probs_by_lang, seed, epoch)
    return rows, keep


def curate_batches(batches: Iterable[pa.RecordBatch], *, probs_by_lang: Mapping[str, np.ndarray], seed: int,
                   epoch: int = 0) -> Iterator[pa.RecordBatch]:
    """The sample of matched/ rows (uuid, url, texts) as CURATED rows: keep_picked(pick_texts(...)).

    `probs_by_lang` may be a Spark broadcast of that mapping (anything with `.value`).
    """
    for batch in batches:
        picked = pick_texts(batch, seed, epoch)
        if picked.num_rows:
            yield from keep_picked(picked, probs_by_lang=probs_by_lang, seed=seed, epoch=epoch)


def pick_texts(batch: pa.RecordBatch, seed: int, epoch: int = 0) -> pa.RecordBatch:
    """One text per matched/ row (pick_rows): CURATED rows (images without a text are dropped).
    Needs no entry probabilities, so the grouping stage can do it."""
    if batch.num_rows == 0:
        return pa.RecordBatch.from_pylist([], schema=CURATED)
    uuid_col, urls, texts_col = batch.column("uuid"), batch.column("url"), batch.column("texts")
    has, chosen = _chosen(texts_col, pick_rows(uuid_col, texts_col, seed, epoch))
    if not has.all():
        mask = pa.array(has)
        uuid_col, urls = uuid_col.filter(mask), urls.filter(mask)
    return pa.RecordBatch.from_arrays(
        [uuid_col, urls, chosen.field("text"), chosen.field("lang"), chosen.field("entry_ids")], schema=CURATED)


def keep_picked(picked: pa.RecordBatch, *, probs_by_lang: Mapping[str, np.ndarray], seed: int, epoch: int = 0
                ) -> Iterator[pa.RecordBatch]:
    """The picked rows (CURATED) that the sample keeps (keep_mask)."""
    if hasattr(probs_by_lang, "value"):
        probs_by_lang = probs_by_lang.value
    if picked.num_rows == 0:
        return
    keep = keep_mask(picked.column("uuid"), picked.column("lang"), picked.column("entry_ids"), probs_by_lang,
                     seed, epoch)
    if keep.any():
        yield picked.filter(pa.array(keep))


def require_probabilities(langs: pa.Array | pa.ChunkedArray, probs_by_lang: Mapping[str, np.ndarray]) -> None:
    """KeyError naming the languages among `langs` without entry probabilities (the curate job's check)."""
    missing = sorted(set(pc.unique(langs).drop_null().to_pylist()) - set(probs_by_lang))
    if missing:
        raise KeyError(f"no entry probabilities for language(s) {', '.join(map(repr, missing))}")
