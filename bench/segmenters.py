#!/usr/bin/env python
"""Benchmark: word segmenters of km, lo, my, bo, dz (and th as a control) against the character
fallback, measured by what their metadata entries match.

No Wikipedia dump of km, lo, my, bo or dz is in ../shared/data (its dumps are bg bn el en hy ja mr
uk vi), and the Tatoeba LID file has no sentences of them either. What the shared data does hold
in these scripts is Babel-ImageNet (../shared/data/eval/babel-imagenet, MIT): ImageNet class
names per language (km 167, lo 141, my 232, bo 107, dz 13, th 896) and the zero-shot prompt
templates translated into km, lo, my and th (80 each, `{}` removed). Those short real texts stand
in for article text here; they are far fewer and shorter than a dump, so the numbers show the
direction and size of the change, not what a Wikipedia build of these languages would give.

Per language, the distinct texts in code point order are split into two halves (even / odd
positions). The build half is counted with the project's own code (`Tokenizer.count_into` for
unigrams and bigrams, `selection.unit_candidates` + `merge.clean_entry` for entries), once with
the character rule (the fallback, segmenter 'characters') and once with the language's configured
segmenter (`MetadataConfig().segmenters`). Two entry sets are reported:

- selected: what the build's rules take (the top 10% of unigrams, bigrams with PMI > 30; at this
  size no bigram reaches PMI 30, so these are unigrams only);
- all: every counted unigram and every counted bigram (joined as the build joins them).

On the held-out half, each entry set is matched with the curation matcher (`build_automaton` +
`match_batch`, project padding, i.e. no-space entries match inside words) and the table shows:
share of texts matched by some entry (`matched`), mean distinct entries matched per text
(`per_text`), share of texts matched by the single most frequent entry (`top1`: near 1 means one
entry takes almost every text, so its count and the t_lang derived from such counts say nothing),
and share of entries that are one character (`1char`).

    python bench/segmenters.py            # table, then one JSON line
    python bench/segmenters.py --json out.json
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# the project first, and not this folder: bench/metadata.py would shadow the metadata package
sys.path[:] = [str(ROOT)] + [p for p in sys.path if p and Path(p).resolve() != Path(__file__).resolve().parent]

import argparse  # noqa: E402
import json  # noqa: E402
from collections import Counter  # noqa: E402

from curation.matcher import build_automaton, match_batch  # noqa: E402
from metadata.config import MetadataConfig  # noqa: E402
from metadata.merge import clean_entry  # noqa: E402
from metadata.selection import UnitCounts, bigram_joiner, unit_candidates  # noqa: E402
from metadata.tokenize import Tokenizer  # noqa: E402

BABEL = ROOT.parent / "shared" / "data" / "eval" / "babel-imagenet"
LANGS = ("km", "lo", "my", "bo", "dz", "th")


def texts_of(lang: str, babel: Path) -> list[str]:
    """Distinct Babel-ImageNet class names and prompt templates ({} removed) of a language."""
    names = json.loads((babel / "babel_imagenet-298.json").read_text(encoding="utf-8"))
    prompts = json.loads((babel / "nllb_dist13b_prompts.json").read_text(encoding="utf-8"))
    code = lang.upper()
    out = list(names.get(code, [[], []])[1])
    out += [" ".join(p.replace("{}", " ").split()) for p in prompts.get(code, [])]
    return sorted({t.strip() for t in out if t and t.strip()})


def entries_from(texts: list[str], tok: Tokenizer, lang: str, config: MetadataConfig) -> dict[str, list[str]]:
    """{'selected': entries the build's rules take, 'all': every counted unigram and bigram}."""
    uni: dict = {}
    bi: dict = {}
    for t in texts:
        tok.count_into(t, uni, bi)
    joiner = bigram_joiner(lang)
    ranked, _ = unit_candidates(lang, UnitCounts(unigrams=dict(uni), bigrams=dict(bi)), config, joiner)
    selected: list[str] = []
    for source in ("wiki_unigram", "wiki_bigram"):
        r = ranked.get(source)
        if r is not None:
            selected += r.entries[: r.cap] if r.cap is not None else r.entries
    everything = list(uni) + [a + joiner + b for a, b in bi]

    def clean(raw: list[str]) -> list[str]:
        kept = {e for e in (clean_entry(x, config.max_entry_chars)[0] for x in raw) if e}
        return sorted(kept)

    return {"selected": clean(selected), "all": clean(everything)}


def match_stats(entries: list[str], texts: list[str]) -> dict:
    if not entries or not texts:
        return {"entries": len(entries), "matched": 0.0, "per_text": 0.0, "top1": 0.0, "one_char": 0.0}
    ids = match_batch(build_automaton(entries), texts)
    per_entry = Counter(int(i) for row in ids for i in row)
    return {
        "entries": len(entries),
        "matched": sum(1 for row in ids if len(row)) / len(texts),
        "per_text": sum(len(row) for row in ids) / len(texts),
        "top1": (per_entry.most_common(1)[0][1] / len(texts)) if per_entry else 0.0,
        "one_char": sum(1 for e in entries if len(e) == 1) / len(entries),
    }


def measure(lang: str, babel: Path, config: MetadataConfig) -> dict | None:
    texts = texts_of(lang, babel)
    if len(texts) < 4:
        return None
    build, held = texts[0::2], texts[1::2]
    name = config.segmenters.get(lang)
    out = {"lang": lang, "texts_build": len(build), "texts_heldout": len(held)}
    for side, seg in (("before", None), ("after", name)):
        tok = Tokenizer(lang, no_space=True, segmenter=seg, max_token_chars=config.max_entry_chars)
        ents = entries_from(build, tok, lang, config)
        out[side] = {"tokenizer": tok.name, "fallback_reason": tok.fallback_reason,
                     **{k: match_stats(v, held) for k, v in ents.items()}}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--babel", type=Path, default=BABEL, help="folder of the Babel-ImageNet json files")
    ap.add_argument("--langs", default=",".join(LANGS))
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args(argv)
    if not (args.babel / "babel_imagenet-298.json").exists():
        print(f"no Babel-ImageNet data at {args.babel}; nothing measured")
        return 0
    config = MetadataConfig()
    rows = [r for r in (measure(lang, args.babel, config) for lang in args.langs.split(",")) if r]
    print("held-out texts matched by entries built from the other half (Babel-ImageNet class names "
          "+ prompts; no Wikipedia dump of these languages in shared data)")
    head = f"{'lang':4} {'n':>7} {'entries':8} {'tokenizer':18} {'#':>5} {'matched':>7} {'per_text':>8} {'top1':>5} {'1char':>5}"
    print(head)
    print("-" * len(head))
    for r in rows:
        for side in ("before", "after"):
            s = r[side]
            for kind in ("selected", "all"):
                m = s[kind]
                print(f"{r['lang']:4} {r['texts_build']:>3}/{r['texts_heldout']:<3} {kind:8} {s['tokenizer']:18} "
                      f"{m['entries']:>5} {m['matched']:>7.2f} {m['per_text']:>8.2f} {m['top1']:>5.2f} {m['one_char']:>5.2f}")
            if s["fallback_reason"]:
                print(f"     fallback: {s['fallback_reason']}")
    line = json.dumps({"bench": "segmenters", "results": rows}, ensure_ascii=False, sort_keys=True)
    print(line)
    if args.json:
        args.json.write_text(line + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
