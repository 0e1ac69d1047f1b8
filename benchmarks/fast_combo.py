"""Fast feature combinations against MiniLM, with the issue's quick ridge protocol (issue 33, item 2).

A study apart from the product: it compares the features a per-model ridge router learns from, on both shared
tables, 5 seeds, under two kinds of feedback.

* **Router.** For each model, a ridge regression predicts its score and its cost from the prompt's features; the
  router picks the argmax of the predicted utility ``score - lambda * cost`` (linear in the two targets, so one
  fit serves every lambda). An unpenalised intercept, as sklearn's ``Ridge(fit_intercept=True)``.
* **Splits.** The project's 60/20/20 train/validation/test split of the prompts
  (:func:`causal_router.data.simulate.split_prompts`, per seed). Routers are fitted on the training prompts; the
  ridge alpha and the sparse block's weight ``w`` are chosen on the validation prompts, per lambda, never on the
  test; the test prompts give the reported utility (mean over test prompts of the chosen model's true utility).
* **Feedback.** ``full``: every model's outcome on every training prompt. ``uniform``: one model per prompt drawn
  uniformly (train and validation; each model's ridge is fitted on the rows where it was logged; no weighting
  needed). The test split is always scored with full feedback.
* **Selection on validation** (``select`` column): ``value``, the validation utility of the argmax policy (exact
  under full feedback; under uniform logs its inverse-propensity estimate ``K * mean(1[pick = logged] * u)``, the
  only value the logs give); ``mse``, the squared error of the predicted utility on the validation outcomes the
  feedback reveals (every model under full feedback, the logged one under uniform logs).
* **Features** (every block's rows have unit L2 norm): ``minilm`` (all-MiniLM-L6-v2, fp32, the studies'
  encoder, through the embedding cache: ``--minilm-cache``, a temporary folder by default); ``static`` (the
  project's ``embed.encoder: static``, model2vec distilled from it, 256 dims); ``tfidf`` (word 1-2 grams,
  ``min_df=2``, sublinear tf, fitted on the training prompts of each seed); ``hash`` (word 1-2 grams hashed into
  2**20 columns, no fit, L2); the combinations ``static+tfidf``, ``static+hash`` and ``minilm+tfidf``: the ridge
  on the scaled blocks ``[dense, w * sparse]``, ``w`` in :data:`WEIGHTS` (0: the dense block alone).
* **Computation.** The dense-only ridges are solved in the primal. A ridge with a sparse block is solved in its
  dual, exactly: the kernel ``A A^T + w^2 B B^T`` (centred for the intercept); one eigendecomposition of the
  centred ``B B^T`` per fit serves every (w, alpha), the dense block entering by the Woodbury identity. A check
  at the start compares it with ``sklearn.linear_model.Ridge`` on ``scipy.sparse.hstack([A, w * B])``.
* **Speed.** On each table's prompts, in this run, interleaved, 3 repeats (median): prompts/s of the static
  encoder, of the sparse transforms, and of their combination (static encode plus transform; the TF-IDF
  vocabulary fitted beforehand), and of MiniLM on a sample for scale.

Run from the repository root (``CAUSAL_ROUTER_DATA_ROOT`` names the shared tables)::

    PYTHONPATH=src python -m benchmarks.fast_combo [--seeds 0,1,2,3,4] [--minilm-cache DIR]

Writes ``benchmarks/results/fast_combo/fast_combo.csv`` (one row per table, seed, feedback, features, select,
lambda), ``speed.csv`` and ``fast_combo.md``. The tables' records are the shared data's (see their
``SOURCE.md`` for origin and licence); the results hold only aggregate numbers.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.feature_extraction.text import HashingVectorizer, TfidfVectorizer
from sklearn.linear_model import Ridge

from causal_router.data.simulate import split_prompts
from causal_router.features.embed import embed_texts
from causal_router.features.encoder import TransformerEncoder
from causal_router.features.encoders import resolve_encoder
from causal_router.features.hardware import cpu_model, usable_cores
from causal_router.validation.loaders import load_full_feedback

from .common import DATA_ROOT, results_dir, shown, table_path

log = logging.getLogger("fast_combo")

#: The issue's quick protocol's lambdas.
LAMBDAS = {"routerbench_subset": [0, 100, 500, 1000], "llmrouter_9models": [0, 2000, 7400, 20000]}
ALPHAS = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0, 300.0)
WEIGHTS = (0.0, 0.5, 1.0, 2.0, 4.0)
#: Feature sets: name -> (dense block or None, sparse block or None).
FEATURES = {
    "minilm": ("minilm", None), "static": ("static", None), "tfidf": (None, "tfidf"), "hash": (None, "hash"),
    "static+tfidf": ("static", "tfidf"), "static+hash": ("static", "hash"), "minilm+tfidf": ("minilm", "tfidf"),
}
REFERENCE = "minilm"
TOLERANCE = 0.003  # issue 33's bar for making a fast encoder the default
OUT = results_dir("fast_combo")
UNIFORM_KEY = 33  # the uniform logs' draws: default_rng([seed, UNIFORM_KEY])


def tfidf_vectorizer() -> TfidfVectorizer:
    return TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True, dtype=np.float64)


def hash_vectorizer() -> HashingVectorizer:
    return HashingVectorizer(ngram_range=(1, 2), n_features=2 ** 20, alternate_sign=False, norm="l2")


# --------------------------------------------------------------------------- ridge on a grid
def decompose(G_tr: np.ndarray, G_ev: np.ndarray):
    """What every ridge on a sparse block with Gram matrices G_tr = B_tr B_tr^T (n, n) and G_ev = B_ev B_tr^T
    (m, n) shares: the eigendecomposition of the centred G_tr (lam (n,), U (n, n)) and the centred G_ev
    rotated, G_ev U (m, n)."""
    r = G_tr.mean(0)
    s_all = r.mean()
    Gc = G_tr - r[None, :] - r[:, None] + s_all
    Ge = G_ev - r[None, :] - G_ev.mean(1)[:, None] + s_all
    lam, U = np.linalg.eigh((Gc + Gc.T) / 2)
    return np.clip(lam, 0, None), U, Ge @ U


def ridge_grid(Y: np.ndarray, A_tr=None, A_ev=None, dec=None, weights=(1.0,), alphas=ALPHAS):
    """Predictions on the evaluation rows of the ridge regressions of ``Y`` (n, T) on the features
    ``[A, w * B]`` with an unpenalised intercept, for every (w, alpha) of the grid.

    A_tr (n, d), A_ev (m, d): the dense block (or None); ``dec``: :func:`decompose` of the sparse block's Gram
    matrices (or None). Returns {(w, alpha): (m, T)}; without a sparse block ``w`` is 0 only, without a dense
    block 1 only (only alpha / w^2 would matter)."""
    y_mean = Y.mean(0)
    Yc = Y - y_mean
    out = {}
    if A_tr is not None:
        a_mean = A_tr.mean(0)
        Ac, Ae = A_tr - a_mean, A_ev - a_mean
    if dec is None:  # primal, dense block only
        s, V = np.linalg.eigh(Ac.T @ Ac)
        s = np.clip(s, 0, None)
        R = V.T @ (Ac.T @ Yc)
        EV = Ae @ V
        for alpha in alphas:
            out[(0.0, alpha)] = EV @ (R / (s + alpha)[:, None]) + y_mean
        return out
    lam, U, P = dec
    Yt = U.T @ Yc
    if A_tr is None:
        for alpha in alphas:
            out[(1.0, alpha)] = P @ (Yt / (lam + alpha)[:, None]) + y_mean
        return out
    At = U.T @ Ac
    eye = np.eye(At.shape[1])
    for w in weights:
        for alpha in alphas:
            D = 1.0 / (w * w * lam + alpha)
            DY = D[:, None] * Yt
            DA = D[:, None] * At
            z = DY - DA @ np.linalg.solve(eye + At.T @ DA, At.T @ DY)
            out[(float(w), alpha)] = w * w * (P @ z) + Ae @ (At.T @ z) + y_mean
    return out


def check_against_sklearn(A: np.ndarray, B: sp.csr_matrix, Y: np.ndarray, w: float = 0.7, alpha: float = 1.0) -> float:
    """Largest absolute difference between :func:`ridge_grid` and sklearn's Ridge on ``hstack([A, w * B])``
    (first half of the rows fitted, second half predicted)."""
    n = len(A) // 2
    ref = Ridge(alpha=alpha, solver="sparse_cg", tol=1e-12, max_iter=100_000)
    X = sp.hstack([sp.csr_matrix(A), w * B]).tocsr()
    expected = ref.fit(X[:n], Y[:n]).predict(X[n:])
    G = (B @ B[:n].T).toarray()
    got = ridge_grid(Y[:n], A[:n], A[n:], decompose(G[:n], G[n:]), weights=(w,), alphas=(alpha,))[(w, alpha)]
    return float(np.abs(got - expected).max())


# --------------------------------------------------------------------------- one seed
def criteria(pred_s, pred_c, scores, costs, lam, logged=None):
    """(value, -mse) on the validation rows for one (w, alpha) and lambda; ``logged`` (n,) the logged
    model under uniform logs, None under full feedback."""
    pu = pred_s - lam * pred_c
    u = scores - lam * costs
    pick = pu.argmax(1)
    rows = np.arange(len(u))
    if logged is None:
        return u[rows, pick].mean(), -np.mean((pu - u) ** 2)
    K = u.shape[1]
    hit = pick == logged
    return K * np.mean(hit * u[rows, logged]), -np.mean((pu[rows, logged] - u[rows, logged]) ** 2)


def run_seed(ff, dense: dict, texts, seed: int, lambdas, features) -> list[dict]:
    tr, va, te = split_prompts(ff, seed)
    ev = np.concatenate([va, te])
    nv = len(va)
    K = ff.n_models
    S, C = ff.scores.astype(float), ff.costs.astype(float)
    rng = np.random.default_rng([seed, UNIFORM_KEY])
    logged_tr, logged_va = rng.integers(0, K, len(tr)), rng.integers(0, K, len(va))
    t0 = time.perf_counter()
    tfidf = tfidf_vectorizer().fit([texts[i] for i in tr])
    sparse = {"tfidf": tfidf.transform(texts), "hash": hash_vectorizer().transform(texts)}
    subsets = {"full": [(None, np.arange(len(tr)))],
               "uniform": [(k, np.flatnonzero(logged_tr == k)) for k in range(K)]}
    decs = {}  # (sparse block, feedback, k) -> decompose(...)
    for name in sorted({b for _, b in (FEATURES[f] for f in features) if b}):
        Bt = sparse[name][tr]
        G_tr, G_ev = (Bt @ Bt.T).toarray(), (sparse[name][ev] @ Bt.T).toarray()
        for feedback, subs in subsets.items():
            for k, sub in subs:
                decs[(name, feedback, k)] = decompose(G_tr[np.ix_(sub, sub)], G_ev[:, sub])
    log.info("seed %d: sparse features and their decompositions %.1f s (tfidf vocabulary %d)", seed,
             time.perf_counter() - t0, len(tfidf.vocabulary_))
    rows = []
    for feat in features:
        t0 = time.perf_counter()
        dname, sname = FEATURES[feat]
        weights = WEIGHTS if dname and sname else None
        # predictions on the eval rows: {(w, alpha): (pred_s, pred_c)}, each (m, K), per feedback
        preds = {}
        for feedback in ("full", "uniform"):
            acc: dict = {}
            for k, sub in subsets[feedback]:
                rows_tr = tr[sub]
                Y = np.hstack([S[rows_tr], C[rows_tr]]) if k is None else np.column_stack([S[rows_tr, k],
                                                                                             C[rows_tr, k]])
                A_tr = dense[dname][rows_tr] if dname else None
                A_ev = dense[dname][ev] if dname else None
                dec = decs[(sname, feedback, k)] if sname else None
                got = ridge_grid(Y, A_tr, A_ev, dec, weights=weights or (1.0,))
                for key, p in got.items():
                    if k is None:
                        acc[key] = (p[:, :K], p[:, K:])
                    else:
                        ps, pc = acc.setdefault(key, (np.empty((len(ev), K)), np.empty((len(ev), K))))
                        ps[:, k], pc[:, k] = p[:, 0], p[:, 1]
            preds[feedback] = acc
        for feedback, acc in preds.items():
            logged = None if feedback == "full" else logged_va
            for lam in lambdas:
                crit = {key: criteria(ps[:nv], pc[:nv], S[va], C[va], lam, logged) for key, (ps, pc) in acc.items()}
                u_te = S[te] - lam * C[te]
                for j, select in enumerate(("value", "mse")):
                    best = max(crit, key=lambda key: crit[key][j])  # first of the grid's order on ties
                    ps, pc = acc[best]
                    pick = (ps[nv:] - lam * pc[nv:]).argmax(1)
                    rows.append(dict(seed=seed, feedback=feedback, features=feat, select=select, lam=lam,
                                     utility=float(u_te[np.arange(len(te)), pick].mean()),
                                     w=best[0] if sname else float("nan"), alpha=best[1],
                                     val_criterion=float(crit[best][j]), n_train=len(tr), n_val=len(va),
                                     n_test=len(te)))
        log.info("seed %d %s: %.1f s", seed, feat, time.perf_counter() - t0)
    return rows


# --------------------------------------------------------------------------- speed
def speed(texts: list[str], train_texts: list[str], static, minilm, repeats: int = 3, minilm_n: int = 24) -> dict:
    """prompts/s of each path on ``texts`` (median of ``repeats`` interleaved runs); MiniLM on a sample."""
    tfidf = tfidf_vectorizer().fit(train_texts)
    hasher = hash_vectorizer()
    static.encode(texts[:256])  # warm-up (the model loaded)
    paths = {"static": lambda: static.encode(texts), "tfidf transform": lambda: tfidf.transform(texts),
             "hash transform": lambda: hasher.transform(texts),
             "static+tfidf": lambda: (static.encode(texts), tfidf.transform(texts)),
             "static+hash": lambda: (static.encode(texts), hasher.transform(texts))}
    times: dict[str, list[float]] = {k: [] for k in paths}
    for _ in range(repeats):
        for name, fn in paths.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    out = {name: len(texts) / statistics.median(t) for name, t in times.items()}
    t0 = time.perf_counter()
    tfidf_vectorizer().fit(train_texts)
    out["tfidf fit (training prompts)"] = len(train_texts) / (time.perf_counter() - t0)
    sample = texts[:: max(1, len(texts) // minilm_n)][:minilm_n]
    minilm.encode(sample[:4])  # warm-up
    t0 = time.perf_counter()
    minilm.encode(sample)
    out[f"minilm ({len(sample)} prompts)"] = len(sample) / (time.perf_counter() - t0)
    return out


# --------------------------------------------------------------------------- report
def paired(records: pd.DataFrame, select: str = "value", reference: str = REFERENCE) -> pd.DataFrame:
    """Per (table, feedback, features): mean over seeds of the mean over lambdas, and the difference with
    MiniLM paired over seeds (mean, SE); feedback ``both``: the two settings averaged."""
    df = records[records["select"] == select]
    per = df.groupby(["table", "feedback", "features", "seed"])["utility"].mean()
    both = per.groupby(["table", "features", "seed"]).mean()
    both.index = pd.MultiIndex.from_tuples([(t, "both", f, s) for t, f, s in both.index], names=per.index.names)
    per = pd.concat([per, both]).sort_index()
    rows = []
    for (table, feedback, feat), g in per.groupby(level=[0, 1, 2], sort=False):
        ref = per.loc[(table, feedback, reference)]
        v = g.droplevel([0, 1, 2])
        d = (v - ref.reindex(v.index)).to_numpy()
        rows.append(dict(table=table, feedback=feedback, features=feat, seeds=len(v), utility=v.mean(),
                         diff=d.mean(), se=d.std(ddof=1) / np.sqrt(len(d)) if len(d) > 1 else float("nan")))
    return pd.DataFrame(rows)


def markdown(records: pd.DataFrame, spd: pd.DataFrame, meta: dict) -> list[str]:
    feats = list(dict.fromkeys(records["features"]))
    reference = REFERENCE if REFERENCE in feats else feats[0]
    main = paired(records, "value", reference)
    alt = paired(records, "mse", reference)
    tables = list(dict.fromkeys(records["table"]))
    lines = ["# Fast feature combinations against MiniLM (issue 33, item 2)", "",
             f"`{meta['command']}`; {meta['cpu']}, {meta['cores']} usable cores; {meta['seconds']:.0f} s wall "
             f"(load average {meta['load_before']:.1f} before, {meta['load_after']:.1f} after: a shared machine). "
             f"Seeds {meta['seeds']}. Protocol and features: the docstring of `benchmarks/fast_combo.py`. Per-model "
             "ridge router (score and cost predicted, argmax of the utility), 60/20/20 split per seed; alpha (and w "
             "for the combinations) chosen per lambda on the validation prompts; test utility under (a) full "
             "feedback and (b) one uniformly logged model per prompt. Lambdas: "
             + "; ".join(f"{t} {', '.join(str(v) for v in LAMBDAS[t])}" for t in tables) + ".", "",
             f"## Test utility, mean over lambdas and seeds; difference with {reference}, paired SE over seeds", "",
             "Selection on validation by the policy's value (exact under full feedback, inverse-propensity "
             "estimate under uniform logs). `both`: the two feedback settings averaged per seed.", ""]

    def table(t: pd.DataFrame) -> list[str]:
        head = ["| table | features | " + " | ".join(f"{fb}: utility | {fb}: diff (SE)" for fb in
                                                     ("full", "uniform", "both")) + " |",
                "|---|---|" + "---:|---:|" * 3]
        body = []
        for tab in tables:
            for f in feats:
                cells = []
                for fb in ("full", "uniform", "both"):
                    r = t[(t.table == tab) & (t.features == f) & (t.feedback == fb)].iloc[0]
                    cells.append(f"{r.utility:.4f} | " + ("—" if f == reference else f"{r['diff']:+.4f} ({r.se:.4f})"))
                body.append(f"| {tab} | {f} | " + " | ".join(cells) + " |")
        return head + body

    lines += table(main)
    lines += ["", f"### Within {TOLERANCE} of {reference} on both tables? (diff >= -{TOLERANCE}, point estimate)", "",
              "| features | " + " | ".join(f"{tab} {fb}" for tab in tables for fb in ("full", "uniform", "both"))
              + " | all |", "|---|" + "---|" * (3 * len(tables) + 1)]
    for f in feats:
        if f == reference:
            continue
        ok = [main[(main.table == tab) & (main.features == f) & (main.feedback == fb)].iloc[0]["diff"] >= -TOLERANCE
              for tab in tables for fb in ("full", "uniform", "both")]
        lines.append(f"| {f} | " + " | ".join("yes" if o else "no" for o in ok) + f" | {'yes' if all(ok) else 'no'} |")
    lines += ["", "## Selection by validation squared error instead (sensitivity)", ""] + table(alt)
    w = records[(records["select"] == "value") & records["w"].notna()]
    if len(w):
        lines += ["", "## The weights chosen (selection by value)", "",
                  "Median (and range) over seeds and lambdas of the sparse block's weight w and of alpha.", "",
                  "| table | feedback | features | w median | w range | alpha median |", "|---|---|---|---:|---|---:|"]
        for (tab, fb, f), g in w.groupby(["table", "feedback", "features"], sort=False):
            lines.append(f"| {tab} | {fb} | {f} | {g.w.median():g} | {g.w.min():g}-{g.w.max():g} | "
                         f"{g.alpha.median():g} |")
    lines += ["", "## Encode speed on the same prompts, this run (prompts/s, median of 3 interleaved runs)", "",
              "Static: the project's static encoder (`resolve_encoder(\"static\")`); the sparse transforms on the "
              "same prompts (TF-IDF fitted beforehand on a seed's training prompts); a combination is the static "
              "encode then the transform, in sequence. MiniLM: fp32 on a sample, for scale.", "",
              "| table | prompts | " + " | ".join(spd.columns[2:]) + " |",
              "|---|---:|" + "---:|" * (len(spd.columns) - 2)]
    for _, r in spd.iterrows():
        lines.append(f"| {r['table']} | {int(r['prompts'])} | " + " | ".join(f"{r[c]:,.1f}" for c in spd.columns[2:])
                     + " |")
    lines += ["", f"Check: the dual ridge against sklearn's `Ridge` on `hstack([A, w * B])`: largest difference "
              f"{meta['check']:.1e}.", ""]
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--datasets", default=",".join(LAMBDAS))
    ap.add_argument("--seeds", default="0,1,2,3,4")
    ap.add_argument("--features", default=",".join(FEATURES))
    ap.add_argument("--data-root", default=str(DATA_ROOT))
    ap.add_argument("--minilm-cache", default=str(Path(tempfile.gettempdir()) / "fast-combo" / "minilm-cache"),
                    help="embedding cache of the MiniLM features (not the repository)")
    ap.add_argument("--out", default=str(OUT))
    ap.add_argument("--markdown-only", action="store_true", help="rewrite fast_combo.md from the records")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    started, load_before = time.perf_counter(), os.getloadavg()[0]
    out = Path(args.out)
    if args.markdown_only:
        meta = json.loads((out / "fast_combo_meta.json").read_text())
        lines = markdown(pd.read_csv(out / "fast_combo.csv"), pd.read_csv(out / "speed.csv"), meta)
        (out / "fast_combo.md").write_text("\n".join(lines))
        print("\n".join(lines))
        return
    out.mkdir(parents=True, exist_ok=True)
    seeds = [int(s) for s in args.seeds.split(",")]
    features = args.features.split(",")
    static = resolve_encoder("static")
    minilm = TransformerEncoder(precision="fp32")
    frames, speeds, check = [], [], None
    for name in args.datasets.split(","):
        ff = load_full_feedback(table_path(name, args.data_root))
        texts = [str(t) for t in ff.prompts]
        t0 = time.perf_counter()
        dense = {"static": embed_texts(texts, encoder=static, use_cache=False).astype(float)}
        log.info("%s: static features %.1f s", name, time.perf_counter() - t0)
        if any(FEATURES[f][0] == "minilm" for f in features):
            t0 = time.perf_counter()
            dense["minilm"] = embed_texts(texts, cache_dir=args.minilm_cache, encoder=minilm).astype(float)
            log.info("%s: MiniLM features %.1f s", name, time.perf_counter() - t0)
        if check is None:
            sub = np.arange(0, min(400, len(texts)))
            B = tfidf_vectorizer().fit_transform([texts[i] for i in sub])
            Y = np.column_stack([ff.scores[sub, 0], ff.costs[sub, 0] * 100])
            check = check_against_sklearn(dense["static"][sub], B, Y)
            log.info("dual ridge vs sklearn Ridge: %.2e", check)
            if check > 1e-5:
                raise SystemExit(f"the dual ridge disagrees with sklearn's Ridge by {check:.2e}")
        for seed in seeds:
            frames.append(pd.DataFrame(run_seed(ff, dense, texts, seed, LAMBDAS[name], features)).assign(table=name))
        tr = split_prompts(ff, seeds[0])[0]
        speeds.append(dict(table=name, prompts=len(texts),
                           **speed(texts, [texts[i] for i in tr], static, minilm)))
        log.info("%s speed: %s", name, speeds[-1])
        write(out, frames, speeds, args, started, load_before, check)  # after every table: a partial run is kept
    log.info("records: %s", shown(out / "fast_combo.csv"))


def write(out: Path, frames, speeds, args, started: float, load_before: float, check: float) -> None:
    records = pd.concat(frames, ignore_index=True)
    records = records[["table"] + [c for c in records.columns if c != "table"]]
    spd = pd.DataFrame(speeds)
    records.to_csv(out / "fast_combo.csv", index=False)
    spd.to_csv(out / "speed.csv", index=False)
    meta = dict(command="PYTHONPATH=src python -m benchmarks.fast_combo " + " ".join(sys.argv[1:]),
                cpu=cpu_model(), cores=usable_cores(), seconds=time.perf_counter() - started,
                load_before=load_before, load_after=os.getloadavg()[0], seeds=args.seeds, check=check)
    (out / "fast_combo_meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    lines = markdown(records, spd, meta)
    (out / "fast_combo.md").write_text("\n".join(lines))
    print("\n".join(lines), flush=True)


if __name__ == "__main__":
    main()
