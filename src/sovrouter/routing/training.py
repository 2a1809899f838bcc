"""Fit every learned piece of the router from a workload (deterministic: fixed seeds, fixed fold order).

Stacking without leaks: the stage verifiers read the prompt models' scores, so on training rows those scores are
out-of-fold (inner group folds); the shipped prompt models are then refit on all training rows. Folds group by
the source item (copies and repeats of a prompt never straddle a fold).

Targets: a slot's score in [0, 1]; graded (judge) scores become soft targets (a row with label 1 weighted by the
score and a row with label 0 weighted by 1 - score), so each probability estimates the expected score.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy import sparse
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import SGDClassifier
from sklearn.model_selection import GroupKFold
from threadpoolctl import threadpool_limits

from sovrouter.routing.answers import AnswerView, raw_answer, read_answer
from sovrouter.routing.codecheck import behaviour_agreement
from sovrouter.routing.dataset import Workload
from sovrouter.routing.execute import matches, run_question
from sovrouter.routing.features import canonical, cheap_features, make_vectorizer, prompt_matrix
from sovrouter.routing.learned import detect_language
from sovrouter.routing.model import (
    OUTPUT_KINDS,
    SLOT_ORDER,
    TOP_SLOTS,
    LinearModel,
    RouterModels,
    proba,
    stage1_vector,
    stage2_vector,
    stage3_vector,
    stage4_vector,
)

SEED = 0
INNER_FOLDS = 3
L, S, M, F = (SLOT_ORDER.index(s) for s in SLOT_ORDER)


@dataclass
class Featurized:
    x: sparse.csr_matrix
    dense: NDArray[np.float64]
    views: list[list[AnswerView]]
    kinds: list[str]
    exec_match: NDArray[np.bool_]  # (n, 4): the slot's stated answer equals the executed value
    executable: NDArray[np.bool_]  # (n,): the prompt's question could be executed


def output_kind_label(prompt_dense: Sequence[float], reference: AnswerView) -> str:
    """Training label for the output kind, read from the strongest slot's answer (not from any dataset name)."""
    has_options = prompt_dense[2] > 0
    if reference.answer is not None and has_options and reference.features[1] > 0:
        return "choice"
    if reference.answer is not None and reference.features[2] > 0:
        return "number"
    if reference.features[5] > 0 and reference.answer is None:
        return "code"
    return "free_text"


def featurize(w: Workload) -> Featurized:
    dense = np.asarray([cheap_features(t, detect_language(canonical(t))) for t in w.texts], dtype=np.float64)
    x = prompt_matrix(make_vectorizer(), w.texts, dense)
    with ThreadPoolExecutor(max_workers=4) as pool:  # code answers run their examples (subprocess-bound)
        views = list(pool.map(lambda resp: [read_answer(r) for r in resp], w.responses))
    warm_code_checks(views)
    kinds = [output_kind_label(dense[i], views[i][F]) for i in range(len(w))]
    executed = [run_question(t) for t in w.texts]
    match = np.asarray([[matches(raw_answer(r), executed[i]) for r in w.responses[i]] for i in range(len(w))])
    return Featurized(x=x, dense=dense, views=views, kinds=kinds, exec_match=match,
                      executable=np.asarray([e is not None for e in executed]))


def warm_code_checks(views: Sequence[Sequence[AnswerView]], workers: int = 4) -> None:
    """Run every pair's differential execution once, in parallel (subprocess-bound); the results are memoised
    in the answers' :class:`~sovrouter.routing.codecheck.CodeAnswer` objects, so the stage vectors built for
    every fold reuse them."""
    def one_row(row: Sequence[AnswerView]) -> None:
        for a in range(len(row)):
            for b in range(a + 1, len(row)):
                behaviour_agreement(row[a].code, row[b].code)

    rows = [row for row in views if sum(v.code is not None for v in row) >= 2]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(one_row, rows))


def top_index(allowed_slots: set[str]) -> int:
    for slot in ("frontier", "hosted-mini", "sovereign-large", "local-small"):
        if slot in allowed_slots:
            return SLOT_ORDER.index(slot)
    return L


def _lr(alpha: float) -> SGDClassifier:
    """Logistic regression fitted by averaged SGD: seconds on this box where lbfgs/liblinear take minutes."""
    return SGDClassifier(loss="log_loss", alpha=alpha, max_iter=20, tol=None, average=True, random_state=SEED)


def _soft(x: NDArray[np.float64], scores: NDArray[np.float64]) -> tuple[Any, NDArray[np.int_], NDArray[np.float64]]:
    """Rows with score s become (label 1, weight s) and (label 0, weight 1 - s); weight-0 rows are dropped."""
    pos, neg = scores > 0, scores < 1
    xx = sparse.vstack([x[pos], x[neg]], format="csr") if sparse.issparse(x) else np.vstack([x[pos], x[neg]])
    y = np.concatenate([np.ones(pos.sum(), dtype=int), np.zeros(neg.sum(), dtype=int)])
    wts = np.concatenate([scores[pos], 1 - scores[neg]])
    return xx, y, wts


def fit_prompt_models(feat: Featurized, w: Workload, idx: NDArray[np.int_]) -> tuple[Any, Any, dict[str, Any]]:
    x = feat.x[idx]
    domain_model = LinearModel.from_estimator(_lr(1e-5).fit(x, [w.domains[i] for i in idx]))
    kind_model = LinearModel.from_estimator(_lr(1e-5).fit(x, [feat.kinds[i] for i in idx]))
    priors: dict[str, Any] = {}
    for j, slot in enumerate(SLOT_ORDER):
        xx, y, wts = _soft(x, w.scores[idx, j])
        priors[slot] = LinearModel.from_estimator(_lr(1e-4).fit(xx, y, sample_weight=wts))
    return domain_model, kind_model, priors


def prompt_vectors(models: tuple[Any, Any, dict[str, Any]], feat: Featurized, idx: NDArray[np.int_],
                   domains: Sequence[str]) -> NDArray[np.float64]:
    domain_model, kind_model, priors = models
    x = feat.x[idx]
    dom = np.zeros((len(idx), len(domains)))
    dp = domain_model.predict_proba(x)
    for j, d in enumerate(domain_model.classes_):
        dom[:, list(domains).index(str(d))] = dp[:, j]
    kinds = np.zeros((len(idx), len(OUTPUT_KINDS)))
    kp = kind_model.predict_proba(x)
    for j, k in enumerate(kind_model.classes_):
        kinds[:, OUTPUT_KINDS.index(str(k))] = kp[:, j]
    pri = np.column_stack([priors[s].predict_proba(x)[:, 1] for s in SLOT_ORDER])
    return np.hstack([feat.dense[idx], dom, kinds, pri])


def oof_prompt_vectors(feat: Featurized, w: Workload, idx: NDArray[np.int_],
                       domains: Sequence[str]) -> NDArray[np.float64]:
    out = np.zeros((len(idx), len(feat.dense[0]) + len(domains) + len(OUTPUT_KINDS) + len(SLOT_ORDER)))
    groups = [w.groups[i] for i in idx]
    for tr, te in GroupKFold(n_splits=INNER_FOLDS).split(idx, groups=groups):
        models = fit_prompt_models(feat, w, idx[tr])
        out[te] = prompt_vectors(models, feat, idx[te], domains)
    return out


def _hgb() -> HistGradientBoostingClassifier:
    return HistGradientBoostingClassifier(max_iter=100, learning_rate=0.08, max_leaf_nodes=15, min_samples_leaf=40,
                                          l2_regularization=1.0, early_stopping=False, random_state=SEED)


def _fit_soft(rows: list[list[float]], scores: list[float]) -> HistGradientBoostingClassifier:
    xx, y, wts = _soft(np.asarray(rows, dtype=np.float64), np.asarray(scores, dtype=np.float64))
    return _hgb().fit(xx, y, sample_weight=wts)


def fit_stage_models(pvec: NDArray[np.float64], feat: Featurized, w: Workload,
                     idx: NDArray[np.int_]) -> tuple[Any, Any, Any, Any, Any, Any, dict[str, Any]]:
    s4: dict[int, tuple[list[list[float]], list[float]]] = {j: ([], []) for j in (S, M, F)}
    s3m: tuple[list[list[float]], list[float]] = ([], [])
    s3t: tuple[list[list[float]], list[float]] = ([], [])
    s1f: tuple[list[list[float]], list[float]] = ([], [])
    s1t: tuple[list[list[float]], list[float]] = ([], [])
    s2s: tuple[list[list[float]], list[float]] = ([], [])
    s2t: tuple[list[list[float]], list[float]] = ([], [])
    for k, i in enumerate(idx):
        p = list(pvec[k])
        first, second = feat.views[i][L], feat.views[i][S]
        # the cheap answers' own quality does not depend on top: one row each (top one-hot constant)
        s1f[0].append(stage1_vector(p, first, "frontier"))
        s1f[1].append(w.scores[i, L])
        s2s[0].append(stage2_vector(p, first, second, "frontier"))
        s2s[1].append(w.scores[i, S])
        row3 = stage3_vector(p, first, second, feat.views[i][M])  # the voter step only runs when top is frontier
        s3m[0].append(row3)
        s3m[1].append(w.scores[i, M])
        s3t[0].append(row3)
        s3t[1].append(w.scores[i, F])
        row4 = stage4_vector(p, feat.views[i])
        for j, rows in s4.items():
            rows[0].append(row4)
            rows[1].append(w.scores[i, j])
        for top in TOP_SLOTS:
            j = SLOT_ORDER.index(top)
            s1t[0].append(stage1_vector(p, first, top))
            s1t[1].append(w.scores[i, j])
            if top != "sovereign-large":
                s2t[0].append(stage2_vector(p, first, second, top))
                s2t[1].append(w.scores[i, j])
    return (_fit_soft(*s1f), _fit_soft(*s1t), _fit_soft(*s2s), _fit_soft(*s2t), _fit_soft(*s3m),
            _fit_soft(*s3t), {SLOT_ORDER[j]: _fit_soft(*rows) for j, rows in s4.items()})


def fit_models(feat: Featurized, w: Workload, idx: NDArray[np.int_]) -> RouterModels:
    domains = tuple(sorted(set(w.domains)))
    with threadpool_limits(limits=1):  # one thread: oversubscribed OpenMP is ~3x slower on a shared box
        pvec = oof_prompt_vectors(feat, w, idx, domains)
        stage = fit_stage_models(pvec, feat, w, idx)
        domain_model, kind_model, priors = fit_prompt_models(feat, w, idx)
    return RouterModels(domains=domains, domain_model=domain_model, kind_model=kind_model, prior_models=priors,
                        stage1_first=stage[0], stage1_top=stage[1], stage2_second=stage[2], stage2_top=stage[3],
                        stage3_mid=stage[4], stage3_top=stage[5], stage4=stage[6])


@dataclass
class StageProbs:
    """Per request (rows of ``idx``): the scores the router computes, for the request's own top slot."""

    prior: NDArray[np.float64]  # (n, 4)
    p1_first: NDArray[np.float64]
    p1_top: NDArray[np.float64]
    p2_second: NDArray[np.float64]
    p2_top: NDArray[np.float64]
    domain_probs: NDArray[np.float64]
    p3_mid: NDArray[np.float64]  # after the voter: P(hosted-mini good | L, S, M)
    p3_top: NDArray[np.float64]  # P(frontier good | L, S, M)
    p4: NDArray[np.float64]  # (n, 4) after all four answered: P(slot good | L, S, M, F); local-small column 0
    domains: tuple[str, ...] = ()  # the columns of ``domain_probs``

    def predicted_domain(self) -> NDArray[np.str_]:
        """The domain the classifier names per row (its most probable one), as the router reads it at serving."""
        names: NDArray[np.str_] = np.asarray(self.domains, dtype=np.str_)
        out: NDArray[np.str_] = names[np.argmax(self.domain_probs, axis=1)]
        return out


def stage_probs(models: RouterModels, feat: Featurized, w: Workload, idx: NDArray[np.int_],
                tops: NDArray[np.int_]) -> StageProbs:
    pm = (models.domain_model, models.kind_model, models.prior_models)
    pvec = prompt_vectors(pm, feat, idx, models.domains)
    r1, r2, r3, r4 = [], [], [], []
    for k, i in enumerate(idx):
        top = SLOT_ORDER[int(tops[k])] if int(tops[k]) != L else "sovereign-large"
        p = list(pvec[k])
        r1.append(stage1_vector(p, feat.views[i][L], top))
        r2.append(stage2_vector(p, feat.views[i][L], feat.views[i][S],
                                top if top != "sovereign-large" else "frontier"))
        r3.append(stage3_vector(p, feat.views[i][L], feat.views[i][S], feat.views[i][M]))
        r4.append(stage4_vector(p, feat.views[i]))
    p4 = np.zeros((len(idx), len(SLOT_ORDER)))
    for slot, model in models.stage4.items():
        p4[:, SLOT_ORDER.index(slot)] = proba(model, r4)
    nd = len(models.domains)
    d0 = feat.dense.shape[1]
    return StageProbs(
        prior=pvec[:, -len(SLOT_ORDER):], p1_first=proba(models.stage1_first, r1),
        p1_top=proba(models.stage1_top, r1), p2_second=proba(models.stage2_second, r2),
        p2_top=proba(models.stage2_top, r2), domain_probs=pvec[:, d0 : d0 + nd],
        p3_mid=proba(models.stage3_mid, r3), p3_top=proba(models.stage3_top, r3), p4=p4, domains=models.domains,
    )


def oof_stage_probs(feat: Featurized, w: Workload, tops: NDArray[np.int_], folds: int = 5,
                    idx: NDArray[np.int_] | None = None) -> tuple[StageProbs, NDArray[np.int_]]:
    """Out-of-fold stage scores for every row (each row scored by models that never saw its group)."""
    rows = np.arange(len(w)) if idx is None else idx
    fold_of = np.zeros(len(rows), dtype=int)
    parts: list[tuple[NDArray[np.int_], StageProbs]] = []
    groups = [w.groups[i] for i in rows]
    for k, (tr, te) in enumerate(GroupKFold(n_splits=folds).split(rows, groups=groups)):
        models = fit_models(feat, w, rows[tr])
        parts.append((te, stage_probs(models, feat, w, rows[te], tops[rows[te]])))
        fold_of[te] = k
    n = len(rows)
    nd = parts[0][1].domain_probs.shape[1]
    out = StageProbs(prior=np.zeros((n, len(SLOT_ORDER))), p1_first=np.zeros(n), p1_top=np.zeros(n),
                     p2_second=np.zeros(n), p2_top=np.zeros(n), domain_probs=np.zeros((n, nd)),
                     p3_mid=np.zeros(n), p3_top=np.zeros(n), p4=np.zeros((n, len(SLOT_ORDER))),
                     domains=parts[0][1].domains)
    for te, sp in parts:
        out.prior[te] = sp.prior
        out.p1_first[te] = sp.p1_first
        out.p1_top[te] = sp.p1_top
        out.p2_second[te] = sp.p2_second
        out.p2_top[te] = sp.p2_top
        out.domain_probs[te] = sp.domain_probs
        out.p3_mid[te] = sp.p3_mid
        out.p3_top[te] = sp.p3_top
        out.p4[te] = sp.p4
    return out, fold_of
