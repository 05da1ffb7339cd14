"""Pool-based active learning: strategies, cold start, stopping rules, simulation and interactive rounds."""
from thresher.active.coldstart import COLD_STARTS, cold_start, kmeans_medoids, random_seed, stratified_seed
from thresher.active.learners import (Learner, LMLearner, LogisticLearner, lm_label_features, pool_embeddings,
                                      predict)
from thresher.active.loop import ActiveSimulator, ActiveState, next_batch, read_labels, scores, summarise
from thresher.active.stopping import (BudgetRule, PlateauRule, StabilizingPredictions, StoppingRule, cohen_kappa,
                                      first_reason)
from thresher.active.strategies import (STRATEGIES, UNCERTAINTY, HybridStrategy, KCenterStrategy, RandomStrategy,
                                        Strategy, UncertaintyStrategy, make_strategy, top_k, uncertainty)

__all__ = ["COLD_STARTS", "cold_start", "kmeans_medoids", "random_seed", "stratified_seed", "Learner",
           "LogisticLearner", "LMLearner", "lm_label_features", "pool_embeddings", "predict", "ActiveSimulator",
           "ActiveState", "next_batch",
           "read_labels", "scores", "summarise", "BudgetRule", "PlateauRule", "StabilizingPredictions",
           "StoppingRule", "cohen_kappa", "first_reason", "STRATEGIES", "UNCERTAINTY", "HybridStrategy",
           "KCenterStrategy", "RandomStrategy", "Strategy", "UncertaintyStrategy", "make_strategy", "top_k",
           "uncertainty"]
