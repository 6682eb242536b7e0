"""The numbers of the comparison: per run, per arm over seeds, and the paired differences.

Head and tail are the paper's own split, per language: a concept is in a language's head when
its entry's count in the curate job's counts/ exceeds that language's t (thresholds.json), i.e.
exactly the entries balancing caps; every other concept of the world is tail (including those
the language's pool never names). Head and tail accuracies are means over concepts of each
concept's held-out accuracy, then over languages (each language counts once).

An effect is called "shown" when the paired difference (same seed, same data, only the arm
differs) has the same sign for every seed and its mean is more than twice its standard error;
otherwise the report says it is not shown at this scale. With a single seed nothing is shown.
"""

from __future__ import annotations

import math

import numpy as np

FREQ_BINS = ((0, 0), (1, 2), (3, 5), (6, 10), (11, 30), (31, 100), (101, 10**12))


def bin_label(lo: int, hi: int) -> str:
    return f"{lo}" if lo == hi else (f"{lo}+" if hi >= 10**12 else f"{lo}-{hi}")


def stats(values: list[float]) -> dict:
    v = np.asarray(values, dtype=np.float64)
    sd = float(v.std(ddof=1)) if v.size > 1 else 0.0
    return {"mean": float(v.mean()), "std": sd, "min": float(v.min()), "max": float(v.max()), "n": int(v.size),
            "values": [round(float(x), 4) for x in v]}


def paired(a: list[float], b: list[float]) -> dict:
    """a - b per seed, with the verdict of the module docstring."""
    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    s = stats(d.tolist())
    se = s["std"] / math.sqrt(d.size) if d.size > 1 else float("inf")
    same_sign = bool((d > 0).all() or (d < 0).all())
    s["shown"] = bool(d.size > 1 and same_sign and abs(s["mean"]) > 2 * se)
    s["direction"] = "up" if s["mean"] > 0 else ("down" if s["mean"] < 0 else "flat")
    return s


def run_metrics(ev: dict, index: dict, languages: list[str], pool_counts: np.ndarray) -> dict:
    out = {"top1": {}, "head": {}, "tail": {}, "head_concepts": {}}
    for lang in languages:
        acc = np.asarray(ev["languages"][lang]["per_concept"])
        counts = np.asarray(index[lang]["counts"])
        head = counts > (index[lang]["t"] or 0)
        out["top1"][lang] = ev["languages"][lang]["top1"]
        out["head"][lang] = float(acc[head].mean()) if head.any() else float("nan")
        out["tail"][lang] = float(acc[~head].mean()) if (~head).any() else float("nan")
        out["head_concepts"][lang] = int(head.sum())
    others = [lang for lang in languages if lang != "en"]
    out["en"] = out["top1"].get("en", float("nan"))
    out["others"] = float(np.mean([out["top1"][lang] for lang in others])) if others else float("nan")
    out["head_all"] = float(np.nanmean([out["head"][lang] for lang in languages]))
    out["tail_all"] = float(np.nanmean([out["tail"][lang] for lang in languages]))
    out["tail_others"] = float(np.nanmean([out["tail"][lang] for lang in others])) if others else float("nan")
    seen = np.asarray(ev["seen"], dtype=np.float64)
    p = seen / max(seen.sum(), 1)
    nz = p[p > 0]
    out["seen_effective_concepts"] = float(np.exp(-(nz * np.log(nz)).sum())) if nz.size else 0.0
    top = np.argsort(-pool_counts, kind="stable")[: max(1, len(pool_counts) // 5)]
    out["seen_top20_share"] = float(p[top].sum())
    data = ev["train_report"]["data"]
    out["kept_share"] = data["images_out"] / max(data["images_in"], 1)
    out["epochs"] = ev["epochs"]
    out["seconds"] = ev["train_seconds"]
    out["seen_pairs"] = int(ev.get("pairs", seen.sum()))
    out["english_share"] = ev.get("english_share", float("nan"))  # of the pairs seen (approximate, see run.py)
    out["last_loss"] = ev["train_report"]["last_loss"]
    # accuracy by how often the concept's name occurs in the language's matched texts
    bins = []
    for lo, hi in FREQ_BINS:
        vals = []
        for lang in languages:
            acc = np.asarray(ev["languages"][lang]["per_concept"])
            counts = np.asarray(index[lang]["counts"])
            sel = (counts >= lo) & (counts <= hi)
            vals.extend(acc[sel].tolist())
        bins.append({"bin": bin_label(lo, hi), "n": len(vals), "acc": float(np.mean(vals)) if vals else None})
    out["by_frequency"] = bins
    return out


SCALARS = ("seen_pairs", "english_share", "en", "others", "head_all", "tail_all", "tail_others",
           "seen_effective_concepts", "seen_top20_share",
           "kept_share", "epochs", "seconds", "last_loss")


def analyse(world, world_cfg, cfg, index: dict, runs: list[dict], pipeline_info: dict, timings: dict) -> dict:
    languages = world.languages
    pool_counts = np.sum([np.asarray(index[lang]["counts"]) for lang in languages], axis=0)
    per_run = []
    for ev in runs:
        m = run_metrics(ev, index, languages, pool_counts)
        per_run.append({"arm": ev["arm"], "seed": ev["seed"], **m, "seen": ev["seen"],
                        "per_concept": {lang: ev["languages"][lang]["per_concept"] for lang in languages}})
    arms = {}
    for arm in cfg.arms:
        rs = sorted((r for r in per_run if r["arm"] == arm), key=lambda r: r["seed"])
        if not rs:
            continue
        a = {k: stats([r[k] for r in rs]) for k in SCALARS}
        for key in ("top1", "head", "tail"):
            a[key] = {lang: stats([r[key][lang] for r in rs]) for lang in languages}
        a["by_frequency"] = [{"bin": b["bin"], "n": b["n"],
                              "acc": stats([r["by_frequency"][i]["acc"] for r in rs]) if b["acc"] is not None else None}
                             for i, b in enumerate(rs[0]["by_frequency"])]
        a["seen_mean"] = np.mean([r["seen"] for r in rs], axis=0).round(2).tolist()
        arms[arm] = a

    def by_seed(arm: str, key: str) -> dict[int, float]:
        return {r["seed"]: r[key] for r in per_run if r["arm"] == arm}

    comparisons = {}

    def compare(name: str, a: str, b: str, keys: tuple[str, ...], question: str) -> None:
        if a not in arms or b not in arms:
            return
        comp = {"a": a, "b": b, "question": question}
        for k in keys:
            x, y = by_seed(a, k), by_seed(b, k)
            seeds = sorted(set(x) & set(y))
            comp[k] = paired([x[s] for s in seeds], [y[s] for s in seeds])
        comparisons[name] = comp

    compare("balanced_vs_raw", "balanced", "raw", ("tail_all", "head_all", "tail_others", "en", "others"),
            "Does balancing (online curation) help tail concepts at equal seen pairs, and what does it cost the head?")
    compare("worldwide_vs_english", "balanced", "english", ("en", "others"),
            "At equal seen pairs and model size, does adding the world's languages cost English (the curse of "
            "multilinguality), and what does it give the other languages?")
    compare("scaled_vs_english", "scaled", "english", ("en", "others"),
            "With more seen pairs for the worldwide run (same model), does English come back to the English-only "
            "level (the paper's remedy)?")
    return {
        "world": {**world.describe(), "config": world_cfg.to_dict()},
        "config": cfg.to_dict(),
        "index": {lang: {"t": index[lang]["t"], "head_concepts": int((np.asarray(index[lang]["counts"]) >
                                                                       (index[lang]["t"] or 0)).sum()),
                         "matched_texts": int(np.sum(index[lang]["counts"]))} for lang in languages},
        "pool_counts": pool_counts.tolist(),
        "pipeline": pipeline_info,
        "runs": per_run,
        "arms": arms,
        "comparisons": comparisons,
        "seen_pairs_per_run": cfg.steps * cfg.batch_size,
        "timings_s": timings,
    }
