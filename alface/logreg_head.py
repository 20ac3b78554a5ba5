"""``train.head=logreg``: the linear head fitted by logistic regression (scikit-learn, L-BFGS),
its regularisation chosen by cross-validation on the training labels.

Why a second way to fit the same head: on frozen face descriptors (dlib's 128-d) the
Lightning head (AdamW, a fixed weight decay and epoch count) is regularised by hand, once for
every label count; logistic regression's optimum at the right strength C is what a frozen
feature extractor is judged by. C is chosen from ``train.head_cs`` by stratified k-fold
cross-validation (``train.head_folds`` folds) on the training features, scored with the metric
of ``train.monitor`` (macro-F1, accuracy or log-loss): a validation fold, never a test split.
The class weights are :func:`alface.balance.class_weights` (``train.class_balance=weights``),
as the Lightning head's loss uses them.

The result is written into the same :class:`~alface.model.FaceClassifier`: the features'
mean and variance into its standardising BatchNorm (eval mode), the coefficients into its
``nn.Linear`` head, so checkpoints, scoring and selection are unchanged. Needs the features in
memory: the linear-probe fast path (``train.mode=linear_probe`` on one device).
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

import numpy as np
import torch

from alface.balance import class_weights
from alface.config import Config
from alface.errors import AlfaceError
from alface.model import FaceClassifier

log = logging.getLogger(__name__)

SCORING = {"val/macro_f1": "f1_macro", "val/acc": "accuracy", "val/loss": "neg_log_loss"}


class HeadError(AlfaceError, ValueError):
    """A logistic-regression head that cannot be fitted as configured."""


def standardise(emb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean (D,), variance (D,)) of features ``emb`` (N, D); a constant feature gets variance 1."""
    x = np.asarray(emb, dtype=np.float64)
    var = x.var(axis=0)
    return x.mean(axis=0), np.where(var > 1e-12, var, 1.0)


def n_folds(labels: np.ndarray, folds: int) -> int:
    """Folds for stratified CV of ``labels`` (N,): ``folds`` capped by the largest class count
    (a class smaller than the folds is left out of some of them); at least 2."""
    counts = np.bincount(np.asarray(labels, dtype=np.int64))
    return int(max(2, min(folds, counts.max(initial=0))))


def fit_logreg(
    x: np.ndarray, y: np.ndarray, num_classes: int, cfg: Config, seed: int
) -> tuple[np.ndarray, np.ndarray, float]:
    """(coef (K, D), intercept (K,), C) of a logistic regression on standardised ``x`` (N, D)
    with labels ``y`` (N,) in 0..K-1; C chosen by stratified CV. Absent classes get coefficient
    0 and intercept -30 (never predicted)."""
    from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
    from sklearn.model_selection import StratifiedKFold
    from threadpoolctl import threadpool_limits

    t = cfg.train
    if not t.head_cs or min(t.head_cs) <= 0:
        raise HeadError(f"train.head_cs must be positive values, got {list(t.head_cs)}")
    if t.monitor not in SCORING:
        raise HeadError(f"train.monitor={t.monitor!r}: use one of {', '.join(SCORING)}")
    y = np.asarray(y, dtype=np.int64)
    present = np.unique(y)
    coef = np.zeros((num_classes, x.shape[1]), np.float64)
    intercept = np.full(num_classes, -30.0)
    if len(present) < 2:  # one class: predict it
        intercept[present] = 0.0
        return coef, intercept, float("nan")
    weights = None
    if t.class_balance == "weights":
        w = class_weights(y, num_classes)
        weights = {int(k): float(w[k]) for k in present}
    args: dict[str, Any] = {"class_weight": weights, "max_iter": 2000, "tol": 1e-4}
    # One BLAS thread: these small solves gain nothing from more, and OpenBLAS's threads on a
    # busy 2-core machine made a 2,000 x 128 cross-validation 100x slower (2 s -> 130 s).
    with warnings.catch_warnings(), threadpool_limits(1):
        warnings.simplefilter("ignore")  # tiny classes: fewer members than folds
        if len(t.head_cs) == 1:
            c, clf = float(t.head_cs[0]), LogisticRegression(C=t.head_cs[0], **args).fit(x, y)
        else:
            cv = StratifiedKFold(n_folds(y, t.head_folds), shuffle=True, random_state=seed)
            clf = LogisticRegressionCV(
                Cs=list(t.head_cs), cv=cv, scoring=SCORING[t.monitor], **args
            ).fit(x, y)
            c = float(np.atleast_1d(clf.C_)[0])
    coef[present], intercept[present] = clf.coef_, clf.intercept_
    if len(present) == 2:  # binary: scikit-learn keeps one row (for the second class)
        coef[present[0]], intercept[present[0]] = 0.0, 0.0
        coef[present[1]], intercept[present[1]] = clf.coef_[0], clf.intercept_[0]
    return coef, intercept, c


def fit_logreg_head(
    model: FaceClassifier, emb: np.ndarray, labels: np.ndarray, cfg: Config
) -> FaceClassifier:
    """Fit ``model``'s head (frozen backbone) on features ``emb`` (N, D) with ``labels`` (N,)
    by cross-validated logistic regression; returns ``model`` in eval mode."""
    if not model.frozen:
        raise HeadError("train.head=logreg fits a linear probe: set train.mode=linear_probe")
    if not len(emb):
        raise HeadError("no labeled features to fit the head on")
    if np.ndim(emb) != 2 or np.shape(emb)[1] != model.embedding_dim:
        raise HeadError(f"features of shape {np.shape(emb)} for a {model.embedding_dim}-d head")
    mean, var = standardise(emb)
    x = (np.asarray(emb, np.float64) - mean) / np.sqrt(var)
    coef, intercept, c = fit_logreg(x, labels, len(model.classes), cfg, cfg.seed)
    with torch.no_grad():
        norm = model.feature_norm
        norm.running_mean.copy_(torch.from_numpy(mean))
        norm.running_var.copy_(torch.from_numpy(var))
        model.head.weight.copy_(torch.from_numpy(coef))
        model.head.bias.copy_(torch.from_numpy(intercept))
    model.head_c = c
    log.info("logistic-regression head: C=%g on %d labeled", c, len(emb))
    return model.eval()
