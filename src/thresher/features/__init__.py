"""Featurizers: pure batch functions that turn rows into feature columns,
and the on-disk FeatureStore that caches them.

    from thresher.features import featurize
    table = featurize(ds, ["text", "quality", "tags"])      # id + feature columns

Heavy modules (embeddings, LM scores, MinHash, scikit-learn) load only when
their featurizer runs.
"""
from thresher.features.base import Featurizer
from thresher.features.featurize import export, featurize, resolve
from thresher.features.registry import DEFAULT_FEATURES, FEATURIZERS, available, make
from thresher.features.store import CacheStats, FeatureStore, default_cache_dir

__all__ = ["CacheStats", "DEFAULT_FEATURES", "FEATURIZERS", "FeatureStore", "Featurizer", "available",
           "default_cache_dir", "export", "featurize", "make", "resolve"]
