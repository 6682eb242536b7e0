"""The one records-in = out + rejected-by-reason counter every job reports (DESIGN 7).

Bad input is never silently lost: each stage of a job counts what came in, what went out and
why the rest was rejected, per reason; `unbalanced()` names any stage where the three do not
add up, and a job refuses to publish then. Stage accountings of tasks merge by addition, so
Spark can sum them in any order.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping

# Stages in pipeline order, with the unit each one counts.
STAGES: dict[str, str] = {
    "read": "input records (WAT records, table rows)",
    "extract": "image links and their texts",
    "lid": "texts",
    "match": "texts",
    "decontam": "matched texts (against evaluation sets, when asked)",
    "near_dup": "matched texts (at most N images per near-duplicate cluster, when asked)",
    "group": "matched texts (identical texts of an image kept once)",
    "sample": "images",
}


class StageAccounting:
    """Records in / out / rejected by reason, per stage; mergeable and JSON-serialisable."""

    def __init__(self, data: Mapping | None = None):
        self.stages: dict[str, dict] = {}
        if data:
            self.merge(data)

    def _stage(self, name: str) -> dict:
        if name not in self.stages:
            self.stages[name] = {"in": 0, "out": 0, "rejected": Counter()}
        return self.stages[name]

    def add(self, stage: str, n_in: int = 0, n_out: int = 0, rejected: Mapping[str, int] | None = None) -> None:
        s = self._stage(stage)
        s["in"] += int(n_in)
        s["out"] += int(n_out)
        for reason, n in (rejected or {}).items():
            if n:
                s["rejected"][reason] += int(n)

    def merge(self, other: StageAccounting | Mapping) -> StageAccounting:
        stages = other.stages if isinstance(other, StageAccounting) else other
        for name, s in stages.items():
            self.add(name, s["in"], s["out"], s["rejected"])
        return self

    def unbalanced(self) -> list[str]:
        """Stages where in != out + rejected (must be empty)."""
        return [n for n, s in self.stages.items() if s["in"] != s["out"] + sum(s["rejected"].values())]

    def to_dict(self) -> dict:
        order = [n for n in STAGES if n in self.stages] + sorted(n for n in self.stages if n not in STAGES)
        out = {}
        for name in order:
            s = self.stages[name]
            out[name] = {
                "unit": STAGES.get(name, ""),
                "in": s["in"],
                "out": s["out"],
                "rejected": dict(sorted(s["rejected"].items())),
                "balanced": s["in"] == s["out"] + sum(s["rejected"].values()),
            }
        return out


def accounting_from_events(counter) -> StageAccounting:
    """The read and extract stages from a curation.inputs.EventCounter."""
    acct = StageAccounting()
    d = counter.as_dict()
    acct.add("read", d["records"], d["records_with_image_links"], {**d["skipped"], **d["record_rejects"]})
    dropped = {**d["link_rejects"], **d["text_rejects"]}
    acct.add("extract", d["pairs"] + sum(dropped.values()), d["pairs"], dropped)
    return acct
