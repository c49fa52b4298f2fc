"""IR metrics through ``pytrec_eval``: the trec_eval definitions behind published BEIR figures."""

from __future__ import annotations

from collections.abc import Mapping

MEASURES = {"ndcg@10": "ndcg_cut_10", "recall@10": "recall_10", "recall@100": "recall_100"}


def evaluate(
    qrels: Mapping[str, Mapping[str, int]], run: Mapping[str, Mapping[str, float]]
) -> dict[str, float]:
    """Mean nDCG@10, Recall@10 and Recall@100 over the judged queries (a missing run counts 0)."""
    import pytrec_eval

    evaluator = pytrec_eval.RelevanceEvaluator(
        {q: dict(d) for q, d in qrels.items()}, {"ndcg_cut.10", "recall.10,100"}
    )
    per_query = evaluator.evaluate({q: dict(run.get(q) or {"-": 0.0}) for q in qrels})
    return {
        name: round(sum(m[key] for m in per_query.values()) / len(qrels), 4)
        for name, key in MEASURES.items()
    }


def ranking_to_run(doc_ids: list[str]) -> dict[str, float]:
    """A ranked list of documents as a trec run: the first gets the highest score.

    pytrec_eval orders by score, so scores come from rank, never from the stage's own scale.
    """
    run: dict[str, float] = {}
    for rank, doc_id in enumerate(doc_ids):
        run.setdefault(doc_id, float(len(doc_ids) - rank))
    return run
