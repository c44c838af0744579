"""The dev score: one number per run that ``select=dev`` picks checkpoints by and the dev table (``report``)
compares settings by. The criteria are stated in ``config.SELECT_CRITERIA``."""

from __future__ import annotations


def dev_score(metrics: dict[str, dict[str, float]], criterion: str = "balanced") -> float:
    """The dev score of ``criterion`` (config.SELECT_CRITERIA), averaged over entities; a missing metric is left out."""

    def mean(vals):
        vals = [v for v in vals if v is not None]
        return sum(vals) / len(vals) if vals else None

    per = []
    for m in metrics.values():
        keep = [m.get(k) for k in ("RA", "TA", "cross_RA")]
        score = mean([m.get("UA"), mean(keep)]) if criterion == "balanced" else mean([m.get("UA"), *keep])
        per.append(score or 0.0)
    return sum(per) / len(per) if per else 0.0
