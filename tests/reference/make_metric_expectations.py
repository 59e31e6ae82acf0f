#!/usr/bin/env python3
"""Writes metric_expectations.json: fixed pseudo-random AU predictions and the values scikit-learn
computes for them, which tests/metrics_reference.rs compares aullm's metrics against (to 1e-12).

    python3 -m venv /tmp/v && /tmp/v/bin/pip install scikit-learn numpy
    /tmp/v/bin/python tests/reference/make_metric_expectations.py

Definitions (DESIGN.md "Evaluation rules", src/eval/metrics.rs):
- per-AU F1: f1_score(y, p >= threshold), positive class, zero_division=nan (undefined -> null);
- pooled over folds: one F1 over all predictions; mean over folds: nanmean of per-fold F1;
- macro: nanmean over AUs, of the pooled values and of the per-AU mean-over-folds values;
- paper variant (optimistic): per AU, threshold swept over unique(p) and +inf, score
  f1_score(y, p >= t, average="macro", labels=[0, 1], zero_division=0); the lowest threshold whose
  score is within 1e-12 of the best wins; macro = mean over AUs.
The spotting section is checked against an independent brute-force implementation here (there is
no scikit-learn function for the MEGC protocol).
"""

import itertools
import json
import math
from pathlib import Path

import numpy as np
import sklearn
from sklearn.metrics import f1_score

SEED = 20240611
THRESHOLD = 0.5
TIE = 1e-12


def none_if_nan(x):
    return None if (x is None or (isinstance(x, float) and math.isnan(x))) else float(x)


def binary_f1(y, d):
    return float(f1_score(y, d, zero_division=np.nan))


def paper(y, p):
    cands = sorted(set(p.tolist())) + [math.inf]
    scores = [
        float(f1_score(y, (p >= t).astype(int), average="macro", labels=[0, 1], zero_division=0))
        for t in cands
    ]
    best = max(scores)
    k = next(i for i, s in enumerate(scores) if s >= best - TIE)
    return (None if math.isinf(cands[k]) else cands[k]), scores[k]


def au_case(rng):
    n_subjects = 7
    per_subject = rng.integers(8, 20, size=n_subjects)
    folds = np.concatenate([np.full(k, s) for s, k in enumerate(per_subject)])
    n = len(folds)
    aus = []

    def add(code, y, p):
        aus.append({"code": code, "truth": [int(v) for v in y], "prob": [float(v) for v in p]})

    # Informative probabilities rounded to 2 decimals, so the sweep meets ties.
    y = (rng.random(n) < 0.35).astype(int)
    add(1, y, np.round(np.clip(0.3 * y + rng.random(n) * 0.7, 0, 1), 2))
    # Rare AU: most folds have no positive -> undefined fold F1 in many folds.
    y = (rng.random(n) < 0.06).astype(int)
    add(2, y, np.round(np.clip(0.3 * y + rng.random(n) * 0.45, 0, 1), 3))
    # Never present, sometimes predicted: F1 = 0 (defined).
    add(4, np.zeros(n, dtype=int), np.round(rng.random(n) * 0.6, 3))
    # Never present, never predicted at 0.5: F1 undefined everywhere.
    add(7, np.zeros(n, dtype=int), np.round(rng.random(n) * 0.45, 3))
    # Noise.
    y = (rng.random(n) < 0.5).astype(int)
    add(12, y, np.round(rng.random(n), 4))
    # Always present.
    add(14, np.ones(n, dtype=int), np.round(rng.random(n), 2))

    expected = {"aus": [], "threshold": THRESHOLD}
    pooled_all, mean_all, paper_all = [], [], []
    for a in aus:
        y = np.array(a["truth"])
        p = np.array(a["prob"])
        d = (p >= THRESHOLD).astype(int)
        pooled = binary_f1(y, d)
        per_fold = [binary_f1(y[folds == f], d[folds == f]) for f in range(n_subjects)]
        defined = [v for v in per_fold if not math.isnan(v)]
        mean = float(np.mean(defined)) if defined else float("nan")
        t, s = paper(y, p)
        pooled_all.append(pooled)
        mean_all.append(mean)
        paper_all.append(s)
        expected["aus"].append(
            {
                "code": a["code"],
                "pooled_f1": none_if_nan(pooled),
                "fold_f1": [none_if_nan(v) for v in per_fold],
                "mean_over_folds_f1": none_if_nan(mean),
                "paper_threshold": t,
                "paper_f1": s,
            }
        )

    def nanmean(v):
        v = [x for x in v if not math.isnan(x)]
        return float(np.mean(v)) if v else None

    expected["macro_pooled_f1"] = nanmean(pooled_all)
    expected["macro_mean_over_folds_f1"] = nanmean(mean_all)
    expected["paper_macro_f1"] = float(np.mean(paper_all))
    return {"folds": [int(f) for f in folds], "aus": aus}, expected


def iou_ok(a, b):
    inter = max(0, min(a[1], b[1]) - max(a[0], b[0]) + 1)
    union = (a[1] - a[0] + 1) + (b[1] - b[0] + 1) - inter
    return 2 * inter >= union


def max_matching(truth, pred):
    # Brute force over assignments of predictions to distinct truths (inputs are small).
    best = 0
    options = [[j for j, t in enumerate(truth) if iou_ok(p, t)] + [None] for p in pred]
    for combo in itertools.product(*options):
        used = [j for j in combo if j is not None]
        if len(used) == len(set(used)):
            best = max(best, len(used))
    return best


def spotting_case(rng):
    videos = {}
    tp = fp = fn = 0
    for v in range(6):
        truth, pred = [], []
        for _ in range(rng.integers(0, 4)):
            on = int(rng.integers(0, 400))
            truth.append([on, on + int(rng.integers(5, 40))])
        for t in truth:
            if rng.random() < 0.7:  # a jittered detection
                pred.append([max(0, t[0] + int(rng.integers(-8, 9))), t[1] + int(rng.integers(-8, 9))])
        for _ in range(rng.integers(0, 3)):  # false alarms
            on = int(rng.integers(0, 400))
            pred.append([on, on + int(rng.integers(3, 30))])
        pred = [p for p in pred if p[0] <= p[1]]
        m = max_matching(truth, pred)
        tp, fp, fn = tp + m, fp + len(pred) - m, fn + len(truth) - m
        videos[f"v{v}"] = {"truth": truth, "pred": pred}
    f1 = 2 * tp / (2 * tp + fp + fn) if (2 * tp + fp + fn) else None
    return videos, {"tp": tp, "fp": fp, "fn": fn, "f1": f1}


def main():
    rng = np.random.default_rng(SEED)
    au_inputs, au_expected = au_case(rng)
    spot_inputs, spot_expected = spotting_case(rng)
    out = {
        "generator": "tests/reference/make_metric_expectations.py",
        "sklearn_version": sklearn.__version__,
        "numpy_version": np.__version__,
        "seed": SEED,
        "au": {"inputs": au_inputs, "expected": au_expected},
        "spotting": {"inputs": spot_inputs, "expected": spot_expected},
    }
    path = Path(__file__).with_name("metric_expectations.json")
    path.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
