"""Learners: the cheap classifiers whose probabilities drive uncertainty sampling.

A learner is anything with `fit(idx, labels)`, `predict_proba(idx)` and
`classes_`, where `idx` are row positions into the feature matrix (or pool)
it was built on. The default is scikit-learn's LogisticRegression on the
static sentence embeddings; `LMLearner` is the same classifier on a small
causal LM's label log-likelihoods (`lm_label_features`), i.e. the LM's
zero-shot label scores calibrated on the labels gathered so far.
"""
from __future__ import annotations

import warnings
from typing import Any, Protocol, runtime_checkable

import numpy as np

from thresher.errors import UsageError

LEARNERS = ("logistic", "lm")


@runtime_checkable
class Learner(Protocol):
    classes_: np.ndarray

    def fit(self, idx: np.ndarray, labels: np.ndarray) -> "Learner": ...

    def predict_proba(self, idx: np.ndarray) -> np.ndarray: ...


def predict(learner: Learner, idx: np.ndarray) -> np.ndarray:
    """The most probable label of each row."""
    proba = learner.predict_proba(idx)
    return np.asarray(learner.classes_, dtype=object)[np.argmax(proba, axis=1)] if len(idx) else \
        np.empty(0, dtype=object)


class LogisticLearner:
    """Multinomial logistic regression on rows of a feature matrix `X` (e.g. embeddings).

    C: inverse L2 strength (default 10: embeddings are unit vectors, so C=1 shrinks
        the logits until the learner predicts the majority class from a few labels);
        class_weight: None or "balanced". With a single
    labeled class it predicts that class with probability 1.
    """

    def __init__(self, X: np.ndarray, C: float = 10.0, max_iter: int = 300, class_weight: str | None = None,
                 random_state: int = 0):
        if not (isinstance(C, (int, float)) and C > 0):
            raise UsageError(f"C must be a positive number, got {C!r}")
        if class_weight not in (None, "balanced"):
            raise UsageError(f"class_weight must be None or 'balanced', got {class_weight!r}")
        self.X = np.asarray(X, dtype=np.float32)
        if self.X.ndim != 2:
            raise UsageError(f"X must be a (rows, dims) matrix, got shape {self.X.shape}")
        self.C, self.max_iter, self.class_weight, self.random_state = C, max_iter, class_weight, random_state
        self.classes_ = np.empty(0, dtype=object)
        self._model = None

    def get_params(self) -> dict[str, Any]:
        return {"C": self.C, "max_iter": self.max_iter, "class_weight": self.class_weight}

    def fit(self, idx: np.ndarray, labels: np.ndarray) -> "LogisticLearner":
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.linear_model import LogisticRegression

        idx = np.asarray(idx, dtype=np.int64)
        labels = np.asarray(labels, dtype=object)
        if len(idx) != len(labels) or len(idx) == 0:
            raise UsageError("fit needs one label per row and at least one row")
        self.classes_, codes = np.unique(labels.astype(str), return_inverse=True)
        self.classes_ = self.classes_.astype(object)
        if len(self.classes_) == 1:
            self._model = None
            return self
        model = LogisticRegression(C=self.C, max_iter=self.max_iter, class_weight=self.class_weight,
                                   random_state=self.random_state)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            warnings.filterwarnings("ignore", message="The number of unique classes", category=UserWarning)
            model.fit(self.X[idx], codes)
        self._model = model
        return self

    def predict_proba(self, idx: np.ndarray) -> np.ndarray:
        idx = np.asarray(idx, dtype=np.int64)
        if len(self.classes_) == 0:
            raise UsageError("the learner has not been fitted")
        if self._model is None:
            return np.ones((len(idx), 1))
        return self._model.predict_proba(self.X[idx])


class LMLearner(LogisticLearner):
    """Logistic regression on a causal LM's per-row label log-probabilities (n, C).

    Build the features once with `lm_label_features` (the LM is the slow
    part); fitting on them is as cheap as on embeddings.
    """

    def __init__(self, label_logprobs: np.ndarray, C: float = 10.0, max_iter: int = 300,
                 class_weight: str | None = None, random_state: int = 0):
        super().__init__(label_logprobs, C=C, max_iter=max_iter, class_weight=class_weight,
                         random_state=random_state)


def lm_label_features(prompts: list[str], label_set: list[str], *, model: Any = None, tokenizer: Any = None,
                      model_path: str | None = None, batch_size: int = 16, max_length: int = 256) -> np.ndarray:
    """(n, C) log P(label | prompt), normalised over `label_set`, from a causal LM
    (default: the bundled SmolLM2-135M-Instruct; any local HF folder via `model_path`)."""
    from thresher.train.metrics import label_logprobs

    if model is None:
        from thresher.models import load_causal_lm

        model, tokenizer = load_causal_lm(model_path)
    lp = label_logprobs(model, tokenizer, list(prompts), [str(x) for x in label_set], batch_size=batch_size,
                        max_length=max_length)
    return np.asarray(lp, dtype=np.float32)


def pool_embeddings(ds, feature: str = "embedding", cache_dir: str | None = None) -> np.ndarray:
    """The pool's embedding matrix (float32, L2-normalised rows; computed and cached as needed)."""
    from thresher.features.columns import load_features

    X = load_features(ds, [feature], cache_dir=cache_dir)[feature]
    if X.ndim != 2:
        raise UsageError(f"feature {feature!r} is not an embedding matrix")
    return np.asarray(X, dtype=np.float32)
