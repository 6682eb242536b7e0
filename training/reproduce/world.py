"""The synthetic world of `make reproduce`: real multilingual concept names, drawn looks, a web-like pool.

Concepts are Babel-ImageNet classes that every chosen language names (the real class names of
babel_imagenet-298.json, MIT), so the metadata, the alt-texts and the zero-shot classifiers all
use names people wrote in those languages, in their scripts. What is synthetic is the rest:

- **looks**: each concept gets its own combination of background colour, background texture,
  shape, shape colour and layout (one, two or three objects), no two concepts closer than two
  of those five factors, drawn with per-image variation (position, size, rotation, colour
  jitter, stripe phase, pixel noise). The image carries the concept, as a photo does, and
  nothing about its name;
- **frequencies**: a concept's frequency is long-tailed (Zipf) within each language, and the
  head differs per language: a language's ranking is a shared popularity plus its own noise;
- **the pool**: alt-texts written per language from that language's translated prompt templates
  (nllb_dist13b_prompts.json) or the bare name, some images with a second text in another
  language, some texts on the wrong image (label noise), and noise texts (file names, captions
  without a name) that match no entry and that curation must drop.

Everything is a function of the config's seed through numpy Generators seeded with explicit
keys (`default_rng([seed, purpose, ...])`); no global RNG is touched, so the same config gives
the same bytes whatever order things are drawn in.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from curation.config_cli import ConfigMixin, option

BABEL_DIR = Path(__file__).resolve().parents[3] / "shared" / "data" / "eval" / "babel-imagenet"
BABEL_FILE = "babel_imagenet-298.json"
PROMPTS_FILE = "nllb_dist13b_prompts.json"

# metadata language (an lid.176 code) -> (Babel-ImageNet code, ISO 639-3 code of an OMW file, script)
LANGUAGES = {
    "en": ("EN", "eng", "Latin"), "de": ("DE", "deu", "Latin"), "fr": ("FR", "fra", "Latin"),
    "es": ("ES", "spa", "Latin"), "ru": ("RU", "rus", "Cyrillic"), "zh": ("ZH", "cmn", "Han"),
    "ja": ("JA", "jpn", "Kana+Han"), "ar": ("AR", "arb", "Arabic"), "hi": ("HI", "hin", "Devanagari"),
    "ko": ("KO", "kor", "Hangul"), "el": ("EL", "ell", "Greek"), "th": ("TH", "tha", "Thai"),
    "it": ("IT", "ita", "Latin"), "uk": ("UK", "ukr", "Cyrillic"), "fa": ("FA", "fas", "Arabic"),
    "he": ("HE", "heb", "Hebrew"), "vi": ("VI", "vie", "Latin"), "tr": ("TR", "tur", "Latin"),
}

PALETTE = {  # name -> RGB: far apart in hue/brightness so 32-px crops keep them apart
    "red": (220, 40, 40), "orange": (245, 140, 20), "yellow": (240, 220, 40), "green": (40, 170, 60),
    "cyan": (40, 200, 210), "blue": (40, 80, 220), "purple": (140, 60, 190), "pink": (240, 130, 190),
    "white": (240, 240, 240), "black": (25, 25, 25),
}
COLOURS = tuple(PALETTE)
TEXTURES = ("plain", "hstripes", "vstripes", "diagonal", "checker", "dots")
SHAPES = ("circle", "square", "triangle", "cross", "diamond", "ring", "star", "xshape")
LAYOUTS = ("one", "two", "three")
FACTORS = ("background", "texture", "shape", "colour", "layout")

# Noise alt-texts that name nothing (per language they come from the templates with no name in them)
NOISE_STRINGS = ("IMG_{n:04d}.JPG", "DSC{n:05d}", "banner", "logo", "thumbnail", "click to enlarge",
                 "image {n:04d}", "photo-{n:05d}.jpg", "untitled", "spacer.gif")


class WorldInputError(ValueError):
    """The world cannot be made from the given inputs (missing Babel-ImageNet data, too few classes)."""


@dataclass(frozen=True)
class WorldConfig(ConfigMixin):
    SECTION = "world"

    seed: int = option(0, help="seed of everything in the world (names chosen, looks, frequencies, pool)")
    languages: tuple[str, ...] = option(("en", "de", "fr", "es", "ru", "zh", "ja", "ar", "hi", "ko", "el", "th"),
                                        help="metadata languages (lid.176 codes) of the world; en must be one")
    concepts: int = option(200, help="Babel-ImageNet classes named in every language, drawn at random")
    images: int = option(24000, help="images of the pool that show a concept (noise records come on top)")
    zipf: float = option(1.0, help="Zipf exponent of a concept's frequency within a language")
    head_noise: float = option(1.0, help="std of a language's own log-popularity noise: how much heads differ")
    english_share: float = option(0.40, help="share of the pool's concept texts in English")
    language_zipf: float = option(0.5, help="Zipf exponent of the other languages' shares, in the order given")
    bare_name_fraction: float = option(0.12, help="alt-texts that are the bare name (LID often misreads them)")
    second_text_fraction: float = option(0.10, help="images with a second alt-text, in another language")
    mismatch_fraction: float = option(0.04, help="concept texts placed on an image of another concept")
    noise_fraction: float = option(0.15, help="extra records whose text names nothing (curation drops them)")
    eval_templates: int = option(8, help="prompt templates per language held out of the alt-texts for zero-shot")
    heldout_per_concept: int = option(6, help="held-out images per concept (zero-shot evaluation)")
    image_px: int = option(48, help="side of the served PNGs (the download job shrinks them)")

    def __post_init__(self):
        if isinstance(self.languages, (list, str)):
            object.__setattr__(self, "languages", (self.languages,) if isinstance(self.languages, str)
                               else tuple(self.languages))
        unknown = [lang for lang in self.languages if lang not in LANGUAGES]
        if unknown:
            raise ValueError(f"languages {unknown} have no Babel-ImageNet mapping here; known: {sorted(LANGUAGES)}")
        if "en" not in self.languages:
            raise ValueError("the world needs English: t_lang of every language derives from t_en")
        if self.concepts < 2 or self.images < 1:
            raise ValueError("concepts must be >= 2 and images >= 1")
        for name in ("english_share", "bare_name_fraction", "second_text_fraction", "mismatch_fraction",
                     "noise_fraction"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1)")


def clean_name(raw: str) -> str:
    """A class name as the metadata build will store it (OMW '_' -> ' ', NFC, one space)."""
    return re.sub(r"\s+", " ", unicodedata.normalize("NFC", raw.replace("_", " "))).strip()


def clean_template(t: str) -> str:
    """Prompt templates carry doubled spaces around {}; alt-text cleaning would collapse them."""
    return re.sub(r"\s+", " ", t).strip()


def _rng(seed: int, *key: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), *[int(k) for k in key]])


# purposes of the seeded generators (one per kind of decision, so adding draws to one leaves the others)
P_CONCEPTS, P_LOOKS, P_FREQ, P_POOL, P_IMAGE, P_HELDOUT, P_TEMPLATES, P_NOISE = range(1, 9)


@dataclass
class Concept:
    index: int  # position in the world (0..n-1)
    imagenet: int  # ImageNet-1k class index (Babel-ImageNet's key)
    names: dict  # lang -> cleaned class name
    look: tuple  # (background, texture, shape, colour, layout) indices


def load_babel(babel_dir: str | os.PathLike | None = None) -> tuple[dict, dict]:
    # as training.evaluate: the flag, then $BABEL_IMAGENET_DATA, then the copy beside the project
    d = Path(babel_dir or os.environ.get("BABEL_IMAGENET_DATA") or BABEL_DIR)
    for f in (BABEL_FILE, PROMPTS_FILE):
        if not (d / f).is_file():
            raise WorldInputError(f"{d / f} not found: the world takes its names from Babel-ImageNet "
                                    "(../shared/data/eval/babel-imagenet, or pass --babel-dir)")
    return (json.loads((d / BABEL_FILE).read_text(encoding="utf-8")),
            json.loads((d / PROMPTS_FILE).read_text(encoding="utf-8")))


def choose_concepts(cfg: WorldConfig, babel: dict) -> tuple[list[Concept], dict]:
    """Classes named in every language, unambiguous in each, `cfg.concepts` of them at random.

    A class is left out when its name in some language is also another class's name there (EN
    'crane' is a bird and a machine): a zero-shot classifier could not tell them apart, and
    neither could a text. Returns the concepts (sorted by ImageNet index) and the counts of
    what was left out.
    """
    per_lang = {}
    for lang in cfg.languages:
        code = LANGUAGES[lang][0]
        idx, names = babel[code]
        per_lang[lang] = {int(i): clean_name(n) for i, n in zip(idx, names, strict=True)}
    common = sorted(set.intersection(*(set(m) for m in per_lang.values())))
    ambiguous = set()
    for m in per_lang.values():
        seen: dict[str, int] = {}
        for i in common:
            name = m[i]
            if not name or "{" in name or "}" in name:
                ambiguous.add(i)
            elif name in seen:
                ambiguous.update((i, seen[name]))
            else:
                seen[name] = i
    usable = [i for i in common if i not in ambiguous]
    if len(usable) < cfg.concepts:
        raise WorldInputError(f"only {len(usable)} classes are named (unambiguously) in all of {list(cfg.languages)}; "
                         f"ask for fewer concepts or fewer languages")
    pick = sorted(_rng(cfg.seed, P_CONCEPTS).choice(usable, size=cfg.concepts, replace=False).tolist())
    looks = assign_looks(cfg.concepts, _rng(cfg.seed, P_LOOKS))
    concepts = [Concept(k, int(i), {lang: per_lang[lang][i] for lang in cfg.languages}, looks[k])
                for k, i in enumerate(pick)]
    return concepts, {"common_classes": len(common), "ambiguous": len(ambiguous), "usable": len(usable)}


def assign_looks(n: int, rng: np.random.Generator, min_distance: int = 2) -> list[tuple]:
    """n distinct looks, every two differing in at least `min_distance` of the five factors."""
    sizes = (len(COLOURS), len(TEXTURES), len(SHAPES), len(COLOURS), len(LAYOUTS))
    chosen: list[tuple] = []
    arr = np.zeros((0, 5), dtype=np.int16)
    tries = 0
    while len(chosen) < n:
        tries += 1
        if tries > 200 * n:
            raise ValueError(f"cannot place {n} looks {min_distance} factors apart")
        look = tuple(int(rng.integers(s)) for s in sizes)
        if look[0] == look[3]:  # a shape the colour of its background would be invisible
            continue
        if arr.shape[0] and int(((arr != np.array(look)).sum(1)).min()) < min_distance:
            continue
        chosen.append(look)
        arr = np.vstack([arr, np.array(look, dtype=np.int16)])
    return chosen


def describe_look(look: tuple) -> str:
    bg, tex, shape, colour, layout = look
    return f"{COLOURS[colour]} {SHAPES[shape]} x{layout + 1} on {TEXTURES[tex]} {COLOURS[bg]}"


# --- drawing ---------------------------------------------------------------------------------------


def _jitter(rgb, rng: np.random.Generator, amount: int = 18) -> tuple[int, int, int]:
    return tuple(int(np.clip(v + rng.integers(-amount, amount + 1), 0, 255)) for v in rgb)


def _background(size: int, rgb, texture: str, rng: np.random.Generator) -> np.ndarray:
    base = np.array(rgb, dtype=np.float32)
    # the texture's second tone: towards black for light colours, towards white for dark ones
    other = base * 0.55 if base.mean() > 110 else base + (255 - base) * 0.45
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    period = float(rng.uniform(0.17, 0.23)) * size
    phase = float(rng.uniform(0, period))
    if texture == "plain":
        mask = np.zeros((size, size), dtype=bool)
    elif texture == "hstripes":
        mask = ((yy + phase) % period) < period / 2
    elif texture == "vstripes":
        mask = ((xx + phase) % period) < period / 2
    elif texture == "diagonal":
        mask = ((xx + yy + phase) % (period * 1.4)) < period * 0.7
    elif texture == "checker":
        mask = (((xx + phase) // period) + ((yy + phase) // period)) % 2 == 0
    elif texture == "dots":
        cx, cy = (xx + phase) % period - period / 2, (yy + phase) % period - period / 2
        mask = cx * cx + cy * cy < (period * 0.28) ** 2
    else:
        raise ValueError(f"unknown texture {texture!r}")
    img = np.where(mask[..., None], other[None, None, :], base[None, None, :])
    return img


def _polygon(kind: str, cx: float, cy: float, r: float, angle: float) -> list[tuple[float, float]] | None:
    def rot(pts):
        c, s = math.cos(angle), math.sin(angle)
        return [(cx + x * c - y * s, cy + x * s + y * c) for x, y in pts]

    if kind == "square":
        h = r * 0.82
        return rot([(-h, -h), (h, -h), (h, h), (-h, h)])
    if kind == "triangle":
        return rot([(0, -r), (r * 0.95, r * 0.75), (-r * 0.95, r * 0.75)])
    if kind == "diamond":
        return rot([(0, -r), (r * 0.7, 0), (0, r), (-r * 0.7, 0)])
    if kind == "star":
        pts = []
        for k in range(10):
            rr = r if k % 2 == 0 else r * 0.45
            a = -math.pi / 2 + k * math.pi / 5
            pts.append((rr * math.cos(a), rr * math.sin(a)))
        return rot(pts)
    if kind in ("cross", "xshape"):
        w = r * 0.34
        arm = [(-r, -w), (-w, -w), (-w, -r), (w, -r), (w, -w), (r, -w), (r, w), (w, w), (w, r), (-w, r), (-w, w),
               (-r, w)]
        return rot(arm) if kind == "cross" else _polygon_rotated(arm, cx, cy, angle + math.pi / 4)
    return None


def _polygon_rotated(pts, cx, cy, angle):
    c, s = math.cos(angle), math.sin(angle)
    return [(cx + x * c - y * s, cy + x * s + y * c) for x, y in pts]


def _draw_shape(draw: ImageDraw.ImageDraw, kind: str, cx: float, cy: float, r: float, angle: float, rgb,
                ring_hole) -> None:
    if kind == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=rgb)
    elif kind == "ring":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=rgb)
        h = r * 0.5
        draw.ellipse([cx - h, cy - h, cx + h, cy + h], fill=ring_hole)
    else:
        draw.polygon(_polygon(kind, cx, cy, r, angle), fill=rgb)


def _placements(layout: str, size: int, rng: np.random.Generator) -> list[tuple[float, float, float]]:
    """(cx, cy, r) of each object of a layout, with jitter; objects never leave the canvas."""
    s = float(size)
    if layout == "one":
        r = float(rng.uniform(0.26, 0.33)) * s
        return [(float(rng.uniform(r, s - r)), float(rng.uniform(r, s - r)), r)]
    if layout == "two":
        r = float(rng.uniform(0.16, 0.2)) * s
        y = float(rng.uniform(r, s - r))
        dy = float(rng.uniform(-0.08, 0.08)) * s
        return [(float(rng.uniform(r, 0.42 * s)), y, r),
                (float(rng.uniform(0.58 * s, s - r)), float(np.clip(y + dy, r, s - r)), r)]
    if layout == "three":
        r = float(rng.uniform(0.12, 0.15)) * s
        pts = [(0.25, 0.27), (0.75, 0.27), (0.5, 0.75)]
        flip = bool(rng.integers(2))
        out = []
        for x, y in pts:
            y = 1 - y if flip else y
            out.append((float(np.clip(x * s + rng.normal(0, 0.03 * s), r, s - r)),
                        float(np.clip(y * s + rng.normal(0, 0.03 * s), r, s - r)), r))
        return out
    raise ValueError(f"unknown layout {layout!r}")


def draw_look(look: tuple, rng: np.random.Generator, size: int = 48) -> Image.Image:
    """One image of a look, with the variation drawn from rng."""
    bg, tex, shape, colour, layout = look
    bg_rgb = _jitter(PALETTE[COLOURS[bg]], rng, 22)
    arr = _background(size, bg_rgb, TEXTURES[tex], rng)
    img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(img)
    fg = _jitter(PALETTE[COLOURS[colour]], rng, 18)
    angle = float(rng.uniform(-0.3, 0.3))
    for cx, cy, r in _placements(LAYOUTS[layout], size, rng):
        _draw_shape(draw, SHAPES[shape], cx, cy, r * float(rng.uniform(0.92, 1.08)), angle, fg, bg_rgb)
    noisy = np.asarray(img, dtype=np.float32) + rng.normal(0, 7, size=(size, size, 3))
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8), "RGB")


def png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


# --- the world ---------------------------------------------------------------------------------------


class World:
    """Concepts, per-language frequencies, the alt-text pool and the held-out images of one config."""

    def __init__(self, cfg: WorldConfig, babel_dir: str | os.PathLike | None = None):
        self.cfg = cfg
        babel, prompts = load_babel(babel_dir)
        self.concepts, self.selection = choose_concepts(cfg, babel)
        self.languages = list(cfg.languages)
        n = len(self.concepts)
        # templates: the same held-out indices in every language (the prompts are translations of one list)
        base = [clean_template(t) for t in prompts["EN"]]
        held = set(_rng(cfg.seed, P_TEMPLATES).choice(len(base), size=cfg.eval_templates, replace=False).tolist())
        self.train_templates, self.eval_templates = {}, {}
        for lang in self.languages:
            ts = [clean_template(t) for t in prompts.get(LANGUAGES[lang][0], prompts["EN"])]
            ts = [t if t.count("{}") == 1 else "{}" for t in ts]
            self.eval_templates[lang] = [t for i, t in enumerate(ts) if i in held]
            self.train_templates[lang] = [t for i, t in enumerate(ts) if i not in held]
        # frequencies: a shared log-popularity plus each language's own noise, ranked -> Zipf weights
        rng = _rng(cfg.seed, P_FREQ)
        popularity = -np.log1p(rng.permutation(n).astype(np.float64))
        self.rank = {}
        self.weights = {}
        for lang in self.languages:
            score = popularity + rng.normal(0.0, cfg.head_noise, n)
            order = np.argsort(-score, kind="stable")
            rank = np.empty(n, dtype=np.int64)
            rank[order] = np.arange(n)
            self.rank[lang] = rank
            w = 1.0 / (rank + 1.0) ** cfg.zipf
            self.weights[lang] = w / w.sum()
        others = [lang for lang in self.languages if lang != "en"]
        share = np.array([1.0 / (k + 1.0) ** cfg.language_zipf for k in range(len(others))])
        share = share / share.sum() * (1.0 - cfg.english_share) if others else share
        self.language_share = {"en": cfg.english_share if others else 1.0,
                               **dict(zip(others, share.tolist(), strict=True))}

    # --- texts ---

    def alt_text(self, lang: str, concept: int, rng: np.random.Generator) -> str:
        name = self.concepts[concept].names[lang]
        if rng.random() < self.cfg.bare_name_fraction:
            return name
        ts = self.train_templates[lang]
        return ts[int(rng.integers(len(ts)))].format(name)

    def noise_text(self, lang: str, rng: np.random.Generator) -> str:
        if rng.random() < 0.5:
            return NOISE_STRINGS[int(rng.integers(len(NOISE_STRINGS)))].format(n=int(rng.integers(100, 99999)))
        ts = self.train_templates[lang]  # a caption with no name in it: "a bad photo of a ."
        return clean_template(ts[int(rng.integers(len(ts)))].format(""))

    # --- the pool ---

    def pool(self) -> list[dict]:
        """Records of the pool: one per (image, alt-text), with what the image really shows.

        Keys: image (the image id, the URL path is /img/<image>.png), text, lang (the language
        it was written in), concept (the concept the text names, -1 for noise), shows (the
        concept the image shows, -1 for a noise image), kind (text, bare, second, mismatch, noise).
        """
        cfg = self.cfg
        rng = _rng(cfg.seed, P_POOL)
        langs = self.languages
        lang_p = np.array([self.language_share[lang] for lang in langs])
        lang_p = lang_p / lang_p.sum()
        out = []
        n_noise = int(round(cfg.images * cfg.noise_fraction / (1.0 - cfg.noise_fraction)))
        for i in range(cfg.images):
            lang = langs[int(rng.choice(len(langs), p=lang_p))]
            c = int(rng.choice(len(self.concepts), p=self.weights[lang]))
            shows = c
            kind = "text"
            if rng.random() < cfg.mismatch_fraction:
                shows = int(rng.integers(len(self.concepts)))
                kind = "mismatch"
            text = self.alt_text(lang, c, rng)
            if kind == "text" and text == self.concepts[c].names[lang]:
                kind = "bare"
            out.append({"image": f"c{i:06d}", "text": text, "lang": lang, "concept": c, "shows": shows, "kind": kind})
            if len(langs) > 1 and rng.random() < cfg.second_text_fraction:
                other = [x for x in langs if x != lang]
                lang2 = other[int(rng.integers(len(other)))]
                out.append({"image": f"c{i:06d}", "text": self.alt_text(lang2, c, rng), "lang": lang2,
                            "concept": c, "shows": shows, "kind": "second"})
        nrng = _rng(cfg.seed, P_NOISE)
        for j in range(n_noise):
            lang = langs[int(nrng.choice(len(langs), p=lang_p))]
            out.append({"image": f"n{j:06d}", "text": self.noise_text(lang, nrng), "lang": lang, "concept": -1,
                        "shows": -1, "kind": "noise"})
        return out

    def image_look(self, image_id: str, shows: int) -> tuple:
        if shows >= 0:
            return self.concepts[shows].look
        r = _rng(self.cfg.seed, P_NOISE, 1, int(image_id[1:]))  # a noise image: any combination
        return (int(r.integers(len(COLOURS))), int(r.integers(len(TEXTURES))), int(r.integers(len(SHAPES))),
                int(r.integers(len(COLOURS))), int(r.integers(len(LAYOUTS))))

    def render(self, image_id: str, shows: int) -> bytes:
        """The PNG of a pool image (a pure function of the seed and the image id)."""
        key = (0 if image_id[0] == "c" else 1, int(image_id[1:]))
        return png_bytes(draw_look(self.image_look(image_id, shows), _rng(self.cfg.seed, P_IMAGE, *key),
                                   self.cfg.image_px))

    def heldout(self) -> list[tuple[int, bytes]]:
        """(concept, PNG) held-out images: fresh draws of every concept's look, never in the pool."""
        out = []
        for c in self.concepts:
            for k in range(self.cfg.heldout_per_concept):
                img = draw_look(c.look, _rng(self.cfg.seed, P_HELDOUT, c.index, k), self.cfg.image_px)
                out.append((c.index, png_bytes(img)))
        return out

    # --- metadata sources ---

    def write_wordnet_sources(self, root: str | os.PathLike) -> list[str]:
        """The concept names as Open Multilingual Wordnet tab files, one per language.

        `wn-data-<iso3>.tab` lines are `offset-pos<TAB><iso3>:lemma<TAB>lemma` (metadata.wordnet);
        the offset column holds the ImageNet class index (the reader ignores it). This is the
        shape of the metadata build's WordNet/OMW source, so the project's own build turns the
        names into entries and automata.
        """
        root = Path(root)
        root.mkdir(parents=True, exist_ok=True)
        paths = []
        for lang in self.languages:
            iso = LANGUAGES[lang][1]
            lines = [f"# synthetic world of training.reproduce: Babel-ImageNet class names ({lang}), MIT"]
            lines += [f"{c.imagenet:08d}-n\t{iso}:lemma\t{c.names[lang].replace(' ', '_')}" for c in self.concepts]
            p = root / f"wn-data-{iso}.tab"
            p.write_text("\n".join(lines) + "\n", encoding="utf-8")
            paths.append(str(p))
        return paths

    def describe(self) -> dict:
        return {
            "concepts": len(self.concepts),
            "languages": {lang: {"script": LANGUAGES[lang][2], "share": round(self.language_share[lang], 4)}
                          for lang in self.languages},
            "selection": self.selection,
            "examples": [{"imagenet": c.imagenet, "look": describe_look(c.look),
                          "names": {lang: c.names[lang] for lang in self.languages}} for c in self.concepts[:6]],
        }
