"""Transferability estimation: rank pretrained backbones for a labelled dataset before fine-tuning (``hf-transfer rank``).

    from hf_transfer.ranking import rank
    for row in rank(["default", "path/to/other_model"], "banking77_10", max_examples=500):
        print(row.model, row.scores["logme"], row.scores["knn_accuracy"])

    advice = rank(["default", "other"], "banking77_10", k=8)[0].advice    # linear probe or tune the body at K = 8?
    from hf_transfer.ranking import rank_sources                          # which labelled source for fewshot --source?

Estimators (one file each): LogME (``logme``), H-score with shrinkage (``hscore``), kNN leave-one-out accuracy
(``knn``), LEEP and NCE from a classifier head (``leep``); ``features`` embeds and caches, ``scores`` scores per
layer, ``api`` ties them together, ``report`` writes ranking.md / ranking.jsonl / the plot; ``strategy`` advises probe or
tuning from a K-shot support set; ``domain`` (MMD, proxy A-distance) and ``sources`` rank source datasets for a target.
"""

from hf_transfer.ranking.api import RankingData, data_arguments, load_ranking_data, rank, score_candidate
from hf_transfer.ranking.domain import mmd, proxy_a_distance
from hf_transfer.ranking.hscore import h_score
from hf_transfer.ranking.knn import knn_accuracy
from hf_transfer.ranking.leep import leep, nce
from hf_transfer.ranking.logme import logme
from hf_transfer.ranking.scores import ESTIMATORS, LAYER_CHOICES, CandidateScore
from hf_transfer.ranking.sources import SourceScore, rank_sources
from hf_transfer.ranking.strategy import StrategyAdvice, advise, advise_support, prototype_loo_accuracy

__all__ = ["ESTIMATORS", "LAYER_CHOICES", "CandidateScore", "RankingData", "SourceScore", "StrategyAdvice", "advise", "advise_support",
           "data_arguments", "h_score", "knn_accuracy", "leep", "load_ranking_data", "logme", "mmd", "nce", "prototype_loo_accuracy", "proxy_a_distance",
           "rank", "rank_sources", "score_candidate"]
