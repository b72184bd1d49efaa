#!/usr/bin/python3
"""torch_census.py — the PyTorch reference for tessera's census benchmarks.

The same models as experiments/census_income_mlp.ini, census_shared_bottom.ini and
census_mmoe.ini (same widths, batch, Adam), written the way a careful PyTorch user would: data
preloaded as tensors, one nn.Embedding over the shared categorical id space with sparse
gradients (SparseAdam), Adam for the dense weights, no Python in the inner loop beyond the step.
--sparse 1,0 runs both variants (sparse gradients with SparseAdam, dense Adam), each built
afresh. Prints "<model> examples_per_sec <value> <variant>" per variant, timed over the
training loop only (as tessera's train.run.examples_per_sec), then the fastest:
"<model> best_examples_per_sec <value> <variant>". Not a quality reference: it measures speed.
bench.sh runs it tuned (see tuning() in torch_text.py, printed on the first line).
"""
import argparse, gzip, time
import numpy as np
import torch
import torch.nn as nn

from torch_text import tuning

CONT = [0, 5, 16, 17, 18, 30, 39]
SKIP = {7, 24, 41}  # marital (a label), the instance weight, income (a label)


def load(path):
    rows = [l.rstrip("\n").split(", ") for l in gzip.open(path, "rt") if l.strip()]
    rows = [r for r in rows if len(r) == 42]
    cat_cols = [c for c in range(42) if c not in CONT and c not in SKIP]
    cont = np.array([[float(r[c]) for c in CONT] for r in rows], dtype=np.float32)
    cont = (cont - cont.mean(0)) / (cont.std(0) + 1e-6)
    ids, off = [], 0
    cat = np.zeros((len(rows), len(cat_cols)), dtype=np.int64)
    for j, c in enumerate(cat_cols):
        vals = {v: i for i, v in enumerate(sorted({r[c] for r in rows}))}
        cat[:, j] = [off + vals[r[c]] for r in rows]
        off += len(vals) + 1
    income = np.array([r[41].startswith("50000+") for r in rows], dtype=np.float32)
    marital = np.array([r[7] == "Never married" for r in rows], dtype=np.float32)
    return torch.from_numpy(cont), torch.from_numpy(cat), off, torch.from_numpy(income), torch.from_numpy(marital)


class Model(nn.Module):
    def __init__(self, kind, vocab, ncat, ncont, sparse):
        super().__init__()
        self.kind = kind
        self.emb = nn.Embedding(vocab, 4, sparse=sparse)
        d = ncat * 4 + ncont
        if kind == "mlp":
            self.net = nn.Sequential(nn.Linear(d, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 1))
            return
        if kind == "shared_bottom":
            self.bottom = nn.Sequential(nn.Linear(d, 130), nn.ReLU())
            width = 130
        else:  # mmoe: 8 experts of 16, one softmax gate per task
            self.experts = nn.Linear(d, 8 * 16)
            self.gates = nn.Linear(d, 2 * 8)
            width = 16
        self.towers = nn.ModuleList(nn.Sequential(nn.Linear(width, 8), nn.ReLU(), nn.Linear(8, 1)) for _ in range(2))

    def forward(self, cont, cat):
        x = torch.cat([self.emb(cat).flatten(1), cont], 1)
        if self.kind == "mlp":
            return [self.net(x).squeeze(1)]
        if self.kind == "shared_bottom":
            h = [self.bottom(x)] * 2
        else:
            e = torch.relu(self.experts(x)).view(-1, 8, 16)
            g = torch.softmax(self.gates(x).view(-1, 2, 8), 2)
            h = [torch.bmm(g[:, k:k + 1, :], e).squeeze(1) for k in range(2)]
        return [t(hk).squeeze(1) for t, hk in zip(self.towers, h)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--model", choices=["mlp", "shared_bottom", "mmoe"], required=True)
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--sparse", default="1,0", help="variants: 1 = sparse embedding gradients with SparseAdam, 0 = dense Adam")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    print(tuning(torch), flush=True)
    cont, cat, vocab, income, marital = load(a.data)
    ntrain = int(0.6 * len(income))
    cont, cat, income, marital = cont[:ntrain], cat[:ntrain], income[:ntrain], marital[:ntrain]
    best = (0, "")
    for sp in [int(x) for x in a.sparse.split(",")]:
        v = run(a, sp, cont, cat, vocab, income, marital, ntrain)
        var = "sparse" if sp else "dense"
        print(f"{a.model} examples_per_sec {v:.1f} {var}", flush=True)
        best = max(best, (v, var))
    print(f"{a.model} best_examples_per_sec {best[0]:.1f} {best[1]}")


def run(a, sparse, cont, cat, vocab, income, marital, ntrain):
    torch.manual_seed(0)
    m = Model(a.model, vocab, cat.shape[1], cont.shape[1], bool(sparse))
    dense = [p for n, p in m.named_parameters() if not n.startswith("emb.") or not sparse]
    opt_d = torch.optim.Adam(dense, lr=1e-3)
    opt_s = torch.optim.SparseAdam(list(m.emb.parameters()), lr=1e-3) if sparse else None
    lossf = nn.BCEWithLogitsLoss()
    labels = [income, marital]
    seen, t = 0, 0.0
    for epoch in range(a.epochs + 1):   # epoch 0 warms up (allocator, thread pool) untimed
        perm = torch.randperm(ntrain)
        t0 = time.perf_counter()
        for s in range(0, ntrain, a.batch):
            idx = perm[s:s + a.batch]
            out = m(cont.index_select(0, idx), cat.index_select(0, idx))
            loss = sum(lossf(o, y.index_select(0, idx)) for o, y in zip(out, labels))
            opt_d.zero_grad(set_to_none=True)
            if opt_s: opt_s.zero_grad(set_to_none=True)
            loss.backward()
            opt_d.step()
            if opt_s: opt_s.step()
            if epoch: seen += len(idx)
        if epoch: t += time.perf_counter() - t0
    return seen / t


if __name__ == "__main__":
    main()
