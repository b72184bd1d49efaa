#!/usr/bin/python3
"""torch_youtube.py — the PyTorch reference for tessera's YouTube DNN (recall) benchmark.

The model of experiments/movielens_youtube_dnn.ini, written the way a careful PyTorch user
would, on the same data (data/movielens/ml-latest-small) split the same way as the movielens
dataset plugin: every rating a watch, per user sorted by time (ties in file order), users with
fewer than 3 watches dropped, training examples at positions 1 .. n-3 (label = watch p,
history = the up to 50 watches before it, genres = every genre of those history movies),
items numbered by descending training frequency, example age (t_max - t) / (t_max - t_min).

  u = ReLU(Linear(128 -> 64) ReLU(Linear(64 + 16 + 1 -> 128) [EmbeddingBag(items, 64, mean)
      over the history; EmbeddingBag(genres, 16, mean) over their genres; age])))
  sampled softmax: the target and J = 100 negatives shared by the batch, drawn with
  replacement from the log-uniform proposal Q(i) = log((i+2)/(i+1)) / log(N+1), every logit
  corrected by -log(J Q(i)), accidental hits masked; output vectors and biases are
  nn.Embedding rows looked up once per step for [targets; samples];
  Adagrad lr 0.05 with sparse gradients for the four embedding tables (--sparse 1) or dense
  ones (--sparse 0); the default --sparse 1,0 runs both. Batch 256.

Each variant is built afresh, trained --warmup untimed steps, then timed over --examples
training examples (0 = one epoch) or --max-seconds, whichever ends first; batch assembly is
inside the timing, as in tessera's train.run.examples_per_sec. Prints one line per variant,
"youtube_dnn examples_per_sec <value> <variant>", then the fastest: "youtube_dnn
best_examples_per_sec <value> <variant>". Not a quality reference: it measures speed.
"""
import argparse, csv, os, time

import numpy as np

from torch_text import ranges, tuning

HISTORY, J = 50, 100


def load(folder):
    r = np.loadtxt(os.path.join(folder, "ratings.csv"), delimiter=",", skiprows=1,
                   dtype=np.float64, usecols=(0, 1, 3))
    user, item, t = r[:, 0].astype(np.int64), r[:, 1].astype(np.int64), r[:, 2].astype(np.int64)
    o = np.lexsort((np.arange(len(user)), t, user))           # user, time, file order
    user, item, t = user[o], item[o], t[o]
    _, ustart, ucount = np.unique(user, return_index=True, return_counts=True)
    keep = np.repeat(ucount >= 3, ucount)
    user, item, t = user[keep], item[keep], t[keep]
    _, ustart, ucount = np.unique(user, return_index=True, return_counts=True)
    raw, item = np.unique(item, return_inverse=True)            # sorted raw id index
    pos = np.arange(len(user)) - np.repeat(ustart, ucount)      # position in the user's list
    last = np.repeat(ucount, ucount)
    freq = np.bincount(item[pos < last - 2], minlength=len(raw))
    order = np.lexsort((np.arange(len(raw)), -freq))            # descending count, then raw id
    new = np.empty(len(raw), np.int64)
    new[order] = np.arange(len(raw))
    item = new[item]
    gname, goff, gids = {}, np.zeros(len(raw) + 1, np.int64), [[] for _ in raw]
    idx = {int(m): new[i] for i, m in enumerate(raw)}
    with open(os.path.join(folder, "movies.csv"), newline="", encoding="utf-8") as f:
        for row in list(csv.reader(f))[1:]:
            k = idx.get(int(row[0]))
            if k is not None:
                gids[k] = [gname.setdefault(g, len(gname)) for g in row[2].split("|")]
    goff[1:] = np.cumsum([len(g) for g in gids])
    gflat = np.array([g for gs in gids for g in gs], np.int64)
    ex = np.nonzero((pos >= 1) & (pos < last - 2))[0]           # index of each label watch
    h0 = np.maximum(ex - HISTORY, ex - pos[ex])
    tt = t[ex].astype(np.float64)
    span = tt.max() - tt.min() if tt.max() > tt.min() else 1.0
    age = ((tt.max() - tt) / span).astype(np.float32)
    return dict(item=item, ex=ex, h0=h0, age=age, goff=goff, gids=gflat, nitems=len(raw),
                ngenres=len(gname))


def run(torch, a, S, sparse):
    """Examples per second of one variant: --warmup untimed steps, then --examples examples or
    --max-seconds, whichever ends first."""
    nn, F = torch.nn, torch.nn.functional
    torch.manual_seed(0)
    N, sp = S["nitems"], bool(sparse)
    watch = nn.EmbeddingBag(N, 64, mode="mean", sparse=sp)
    genre = nn.EmbeddingBag(S["ngenres"], 16, mode="mean", sparse=sp)
    tower = nn.Sequential(nn.Linear(64 + 16 + 1, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU())
    out_v = nn.Embedding(N, 64, sparse=sp)                      # output vectors v_i
    out_b = nn.Embedding(N, 1, sparse=sp)                       # output biases b_i
    nn.init.normal_(out_v.weight, std=0.05)
    nn.init.zeros_(out_b.weight)
    mods = [watch, genre, tower, out_v, out_b]
    opt = torch.optim.Adagrad([p for m in mods for p in m.parameters()], lr=0.05)
    log_n1 = float(np.log(N + 1.0))
    item_np, goff, gids = S["item"], S["goff"], S["gids"]
    item = torch.from_numpy(item_np)

    def step(rows):
        e, h0 = S["ex"][rows], S["h0"][rows]
        hl = e - h0                                              # history lengths (>= 1)
        hist = item_np[ranges(h0, hl)]                           # the history bags, flat
        hoff = np.concatenate([[0], np.cumsum(hl)[:-1]])
        gl = goff[hist + 1] - goff[hist]                         # genres of every history movie
        g = gids[ranges(goff[hist], gl)]
        goffs = np.concatenate([[0], np.cumsum(np.add.reduceat(gl, hoff))[:-1]])
        feats = torch.cat([watch(torch.from_numpy(hist), torch.from_numpy(hoff)),
                           genre(torch.from_numpy(g), torch.from_numpy(goffs)),
                           torch.from_numpy(S["age"][rows])[:, None]], 1)   # (B, 81)
        u = tower(feats)                                         # (B, 64)
        tgt = item[torch.from_numpy(e)]                          # (B)
        s = (torch.exp(torch.rand(J, dtype=torch.float64) * log_n1).floor().long() - 1).clamp_(0, N - 1)
        ids = torch.cat([tgt, s])                                # (B + J) targets, then samples
        logq = torch.log(J * torch.log((ids + 2.0) / (ids + 1.0)) / log_n1).float()
        v, b = out_v(ids), out_b(ids).squeeze(1) - logq          # (B + J, 64), (B + J)
        B = len(rows)
        pos = (u * v[:B]).sum(1, keepdim=True) + b[:B, None]     # (B, 1)
        neg = u.mm(v[B:].t()) + b[None, B:]                      # (B, J): one shared sgemm
        neg = neg.masked_fill(s[None, :] == tgt[:, None], float("-inf"))   # accidental hits
        loss = F.cross_entropy(torch.cat([pos, neg], 1), torch.zeros(B, dtype=torch.long))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    n = len(S["ex"])
    rng = np.random.RandomState(1)
    perm = rng.permutation(n)
    for k in range(a.warmup):
        step(perm[k * a.batch:(k + 1) * a.batch])
    total = a.examples if a.examples > 0 else n
    perm = rng.permutation(n)
    seen, p, t0 = 0, 0, time.perf_counter()
    while seen < total and (a.max_seconds <= 0 or time.perf_counter() - t0 < a.max_seconds):
        if p >= n:
            perm, p = rng.permutation(n), 0
        rows = perm[p:p + min(a.batch, total - seen)]
        step(rows)
        p += len(rows)
        seen += len(rows)
    return seen / (time.perf_counter() - t0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True, help="the ml-latest-small folder")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--examples", type=int, default=0, help="timed examples per variant; 0 = one epoch")
    ap.add_argument("--max-seconds", type=float, default=0, help="stop a variant's timing after this (0: no limit)")
    ap.add_argument("--warmup", type=int, default=10, help="untimed steps first")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--sparse", default="1,0", help="variants: 1 = sparse embedding gradients, 0 = dense")
    a = ap.parse_args()
    import torch
    torch.set_num_threads(a.threads)
    print(tuning(torch), flush=True)
    S = load(a.data)
    best = (0, "")
    for sp in [int(x) for x in a.sparse.split(",")]:
        v = run(torch, a, S, sp)
        var = "sparse" if sp else "dense"
        print(f"youtube_dnn examples_per_sec {v:.1f} {var}", flush=True)
        best = max(best, (v, var))
    print(f"youtube_dnn best_examples_per_sec {best[0]:.1f} {best[1]}")


if __name__ == "__main__":
    main()
