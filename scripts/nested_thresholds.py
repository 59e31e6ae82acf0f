#!/usr/bin/env python3
"""Are per-AU thresholds chosen on validation clips better than 0.5 for new people?

Reads the predictions.csv that `aullm eval --model MODEL --dataset synth:DIR` writes for a folder of
validation subjects, and CASME II-style labels (the coding CSV `aullm synth` writes). For each
subject in turn, each AU's threshold is chosen on the other subjects' clips (best F1 of the positive
class, ties to the threshold nearest 0.5, as `aullm train` chooses them) and applied to this
subject's clips; the decisions are pooled over subjects and scored as binary macro-F1. The line
"0.5" scores the same clips at 0.5 for every AU. With --balance TEST_SUBJECTS (comma-separated,
e.g. sub06,sub12), a third figure: each AU's threshold w/(1+w) from the class balance of the
training clips (every subject of the coding CSV but the predicted and the test ones), where w is the
positive weight `aullm train` gives that AU (n_neg/n_pos, clamped to 1..10): the threshold at which
a model trained with that weight says "unweighted probability 0.5". (README "The shipped model".)

usage: scripts/nested_thresholds.py [--balance TEST_SUBJECTS] CODING_CSV PREDICTIONS_CSV [PREDICTIONS_CSV ...]
"""
import csv
import re
import sys


def labels(coding_csv):
    """(subject, clip) -> set of AU numbers."""
    out = {}
    with open(coding_csv, newline="") as f:
        for row in csv.DictReader(f):
            key = ("sub%02d" % int(row["Subject"]), row["Filename"])
            out[key] = {int(x) for x in re.findall(r"\d+", row["Action Units"])}
    return out


def f1(tp, fp, fn):
    d = 2 * tp + fp + fn
    return 2 * tp / d if d else 0.0


def best_threshold(truth, prob):
    """The threshold maximising F1 on (truth, prob); 0.5 without positives; ties nearest 0.5."""
    if not any(truth):
        return 0.5
    ps = sorted(set(prob))
    candidates = [(a + b) / 2 for a, b in zip(ps, ps[1:])] + [0.5, ps[0] - 1e-6]
    best = (-1.0, 0.5)
    for c in candidates:
        tp = sum(1 for t, p in zip(truth, prob) if t and p >= c)
        fp = sum(1 for t, p in zip(truth, prob) if not t and p >= c)
        fn = sum(1 for t, p in zip(truth, prob) if t and p < c)
        s = f1(tp, fp, fn)
        if s > best[0] + 1e-12 or (abs(s - best[0]) <= 1e-12 and abs(c - 0.5) < abs(best[1] - 0.5)):
            best = (s, c)
    return best[1]


def balance_thresholds(lab, exclude):
    """AU number -> w/(1+w), w = n_neg/n_pos over the clips of subjects not in `exclude`."""
    train = [aus for (subject, _), aus in lab.items() if subject not in exclude]
    out = {}
    for n in sorted(set().union(*train)) if train else []:
        pos = sum(1 for aus in train if n in aus)
        w = min(max((len(train) - pos) / pos, 1.0), 10.0)
        out[n] = w / (1 + w)
    return out


def score(rows, lab, nested, fixed=None):
    aus = [k[:-2] for k in rows[0] if k.endswith("_p")]
    subjects = sorted({r["subject"] for r in rows})
    counts = {a: [0, 0, 0] for a in aus}
    for s in subjects:
        train = [r for r in rows if r["subject"] != s]
        test = [r for r in rows if r["subject"] == s]
        for a in aus:
            n = int(a[2:])
            th = fixed.get(n, 0.5) if fixed else 0.5
            if nested:
                th = best_threshold(
                    [n in lab[(r["subject"], r["clip"])] for r in train],
                    [float(r[a + "_p"]) for r in train],
                )
            for r in test:
                t = n in lab[(r["subject"], r["clip"])]
                d = float(r[a + "_p"]) >= th
                counts[a][0] += t and d
                counts[a][1] += (not t) and d
                counts[a][2] += t and not d
    return sum(f1(*c) for c in counts.values()) / len(aus)


def main():
    args = sys.argv[1:]
    test = None
    if args[:1] == ["--balance"] and len(args) > 1:
        test = set(args[1].split(","))
        args = args[2:]
    if len(args) < 2:
        sys.exit(__doc__.strip().splitlines()[-1])
    lab = labels(args[0])
    for path in args[1:]:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
        missing = [(r["subject"], r["clip"]) for r in rows if (r["subject"], r["clip"]) not in lab]
        if missing:
            sys.exit(f"{path}: clip {missing[0]} has no row in {args[0]}")
        line = f"{path}: 0.5 {score(rows, lab, False):.3f}, nested thresholds {score(rows, lab, True):.3f}"
        if test is not None:
            predicted = {r["subject"] for r in rows}
            fixed = balance_thresholds(lab, test | predicted)
            line += f", class-balance thresholds {score(rows, lab, False, fixed):.3f}"
        print(line)


if __name__ == "__main__":
    main()
