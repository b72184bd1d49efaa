#!/usr/bin/python3
"""torch_text.py — the PyTorch reference for tessera's semantic matching benchmarks.

The same models as experiments/wordnet_dssm.ini, wordnet_cnn_dssm.ini and wordnet_lstm_dssm.ini
(same widths, max_words = 16, 30,000 letter trigrams, 255 in-batch negatives, batch 256, Adam
lr 0.001), written the way a careful PyTorch user would:

  * the real data: data/wordnet/wordnet30_gloss_pairs.tsv.gz, word-hashed as the textpairs
    dataset does (runs of ASCII letters/digits and bytes >= 0x80, lower-cased, "#word#" cut
    into letter trigrams, the 30,000 most frequent trigrams of the training rows, the first 16
    words of a text, an empty text = one empty word); 7,000 rows held out by a numpy shuffle of
    seed 2026 (the same sizes as tessera's split, not the same rows), so the bags have the
    shape statistics tessera trains on;
  * word hashing = nn.EmbeddingBag(V, E, mode="sum") over the trigram ids with offsets (per
    text for DSSM, per word for CNN/LSTM), V = the trigrams kept (at most 30,000; about 10,000
    occur: 10,037 here, 10,190 in tessera's split), with sparse gradients and SparseAdam, or
    dense ones and Adam (--sparse 1,0 runs both);
  * padding only to the longest text of each batch (not to 16), lengths kept;
  * dssm:  bag -> tanh -> Linear(300,300) tanh -> Linear(300,128) tanh, per tower;
  * cnn_dssm: word bags (B,T,300) -> nn.Conv1d(300,300,3,padding=1) tanh -> max over the valid
    words (positions >= len masked to -inf) -> Linear(300,128) tanh;
  * lstm_dssm: word bags (B,T,128) -> a peephole LSTM (128 units, forget bias 1) written as
    PyTorch code: ONE fused input projection x W + b for all steps (B,T,512), then per step
    h U, the peepholes p_i, p_f on c_{t-1} and p_o on c_t; the hidden state at each row's last
    valid word -> Linear(128,128) tanh. Variant `peephole` runs the step loop in Python, `jit`
    through torch.jit.script. Variant `nn` is nn.LSTM (PyTorch's fused kernel, NO peepholes)
    over a packed sequence: the optimistic bound, a cheaper model than tessera's;
  * the match head: R = 10 cos(q, d) with |v| = sqrt(|v|^2 + 1e-8), every other row of the batch
    a negative (documents with the same lower-cased string masked), cross-entropy over the 256.

Each variant is built afresh, trained --warmup untimed steps, then timed over --pairs training
pairs (0 = one epoch) or --max-seconds, whichever ends first; batch assembly is inside the
timing, as in tessera's train.run.examples_per_sec. Prints one line per variant,
"<model> pairs_per_sec <value> <variant>", then the fastest: "<model> best_pairs_per_sec
<value> <variant>" (and "lstm_dssm_nn best_pairs_per_sec ..." for the nn.LSTM bound). For
cnn_dssm it first prints "cnn_dssm flops_per_pair <count> ..." (see flops_per_pair); --flops
stops there (numpy only, no torch needed). Not a quality reference: it measures speed.
"""
import argparse, gzip, os, re, time
from collections import Counter

import numpy as np

WORD = re.compile(rb"[A-Za-z0-9\x80-\xff]+")
MAX_WORDS, VOCAB, GAMMA = 16, 30000, 10.0


def tuning(torch):
    """One line naming the tunings in effect (bench.sh sets them, issue 17): glibc malloc's
    trim/mmap thresholds (so that freed temporaries are reused instead of faulted in afresh),
    OpenBLAS's own threads (1, under torch's intra-op threads) and torch's thread count."""
    env = " ".join(f"{k}={os.environ.get(k, '(unset)')}" for k in
                   ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_", "OPENBLAS_NUM_THREADS"))
    return f"# tuning: {env} torch.get_num_threads()={torch.get_num_threads()}"


def words_of(text):
    w = [m.lower()[:255] for m in WORD.findall(text)][:MAX_WORDS]
    return w if w else [b""]          # an empty text is one empty word


def trigrams(w):
    s = b"#" + w + b"#"
    return [s[i:i + 3] for i in range(len(s) - 2)] if w else []


def load(path, test_size=5000, valid_size=2000, seed=2026):
    """Training split as CSR arrays: per example a range of words, per word a range of ids."""
    queries, docs = [], []
    with gzip.open(path, "rb") as f:
        for ln, line in enumerate(f):
            if ln == 0 and line.startswith(b"synset_id\t"):
                continue
            fs = line.rstrip(b"\n").split(b"\t")
            if len(fs) < 4 or not fs[2]:
                continue
            docs.append(fs[2].replace(b"_", b" ").lower())
            queries.append(fs[3].lower())
    n = len(queries)
    held = np.random.RandomState(seed).permutation(n)[:test_size + valid_size]
    keep = np.ones(n, bool)
    keep[held] = False
    queries = [q for q, k in zip(queries, keep) if k]
    docs = [d for d, k in zip(docs, keep) if k]
    qw, dw = [words_of(t) for t in queries], [words_of(t) for t in docs]
    count = Counter()
    for ws in (qw, dw):
        for t in ws:
            for w in t:
                count.update(trigrams(w))
    top = sorted(count.items(), key=lambda kv: (-kv[1], kv[0]))[:VOCAB]
    tid = {k: i for i, (k, _) in enumerate(top)}

    def csr(texts):
        wlen, ids, nw = [], [], []
        for t in texts:
            nw.append(len(t))
            for w in t:
                x = [tid[g] for g in trigrams(w) if g in tid]
                wlen.append(len(x))
                ids.extend(x)
        nw = np.array(nw, np.int64)
        wlen = np.array(wlen, np.int64)
        return (np.concatenate([[0], np.cumsum(nw)]), nw, np.concatenate([[0], np.cumsum(wlen)]),
                wlen, np.array(ids, np.int64))

    doc_key = {}
    doc_id = np.array([doc_key.setdefault(d, len(doc_key)) for d in docs], np.int64)
    return csr(qw), csr(dw), doc_id, len(tid)


def ranges(starts, lens):
    """Concatenation of arange(s, s + l) for every (s, l), vectorised."""
    total = int(lens.sum())
    if total == 0:
        return np.zeros(0, np.int64)
    ends = np.cumsum(lens)
    return np.repeat(starts - (ends - lens), lens) + np.arange(total)


def batch_bags(t, rows, per_word):
    """EmbeddingBag inputs for rows of one side: ids, offsets (per text, or per word cell of a
    (B, T) grid padded to the batch's longest text), and the lengths in words."""
    w_off, nw, i_off, wlen, ids = t
    lens = nw[rows]
    words = ranges(w_off[rows], lens)                  # the rows' word indices, in order
    flat = ids[ranges(i_off[words], wlen[words])]
    if not per_word:                                   # one bag per text: sum of its words' counts
        tri = np.add.reduceat(wlen[words], np.cumsum(lens) - lens)   # every text has >= 1 word
        off = np.concatenate([[0], np.cumsum(tri)[:-1]])
        return flat, off, lens, 0
    T = int(lens.max())
    cell = np.zeros((len(rows), T), np.int64)          # trigram count of each (row, word) cell
    mask = np.arange(T)[None, :] < lens[:, None]
    cell[mask] = wlen[words]
    off = np.concatenate([[0], np.cumsum(cell.ravel())[:-1]])
    return flat, off, lens, T


def flops_per_pair(q, d, model):
    """Multiply-adds x 2 of the sgemm-shaped work per training pair (forward + backward = 3x
    the forward product: dX and dW each cost as much as the forward product). cnn_dssm: the
    im2col convolution at each valid word (3*300 -> 300) and the dense 300 -> 128, both towers,
    and the in-batch cosine sgemm (128 x 256 per pair); the embedding sums are not counted."""
    lq, ld = q[1].mean(), d[1].mean()
    if model == "cnn_dssm":
        conv, dense = 2 * 900 * 300, 2 * 300 * 128
        return 3 * ((lq + ld) * conv + 2 * dense + 2 * 128 * 256), lq, ld
    raise SystemExit("--flops is defined for cnn_dssm only")


def build(torch, a, vocab, sparse, lstm):
    """The two towers and their optimizers for one variant."""
    nn = torch.nn
    E = {"dssm": 300, "cnn_dssm": 300, "lstm_dssm": 128}[a.model]
    H = 128

    def peephole_loop(xw, U, p, lens):
        B, T, Hn = xw.shape[0], xw.shape[1], p.shape[1]
        h = xw.new_zeros(B, Hn)
        c = xw.new_zeros(B, Hn)
        hs = []
        for t in range(T):
            g4 = xw[:, t] + h.mm(U.t())
            ai, af, ag, ao = g4.chunk(4, 1)
            i = torch.sigmoid(ai + p[0] * c)
            f = torch.sigmoid(af + p[1] * c + 1.0)      # forget_bias = 1
            c = f * c + i * torch.tanh(ag)
            o = torch.sigmoid(ao + p[2] * c)             # the output peephole sees c_t
            h = o * torch.tanh(c)
            hs.append(h)
        hs = torch.stack(hs, 1)                          # (B, T, H)
        return hs[torch.arange(B), lens - 1]             # each row's last valid step

    loop = torch.jit.script(peephole_loop) if lstm == "jit" else peephole_loop

    class Peephole(nn.Module):
        """Peephole LSTM, gate order i, f, g, o: a = x W + b (all steps at once) + h U."""
        def __init__(self):
            super().__init__()
            self.inp = nn.Linear(E, 4 * H)
            self.U = nn.Linear(H, 4 * H, bias=False)
            self.p = nn.Parameter(torch.empty(3, H).uniform_(-0.1, 0.1))

        def forward(self, x, lens):                     # (B, T, E), (B) -> (B, H)
            return loop(self.inp(x), self.U.weight, self.p, lens)   # inp: one sgemm, all steps

    class NNLSTM(nn.Module):
        """nn.LSTM, no peepholes, over a packed sequence: the optimistic bound."""
        def __init__(self):
            super().__init__()
            self.rnn = nn.LSTM(E, H, batch_first=True)

        def forward(self, x, lens):
            pk = nn.utils.rnn.pack_padded_sequence(x, lens, batch_first=True, enforce_sorted=False)
            return self.rnn(pk)[1][0][0]                # h_n: each row's last valid step

    class Tower(nn.Module):
        def __init__(self):
            super().__init__()
            self.bag = nn.EmbeddingBag(vocab, E, mode="sum", sparse=bool(sparse))
            if a.model == "dssm":
                self.net = nn.Sequential(nn.Tanh(), nn.Linear(300, 300), nn.Tanh(), nn.Linear(300, 128), nn.Tanh())
            elif a.model == "cnn_dssm":
                self.conv = nn.Conv1d(300, 300, 3, padding=1)
                self.out = nn.Linear(300, 128)
            else:
                self.rnn = NNLSTM() if lstm == "nn" else Peephole()
                self.out = nn.Linear(H, 128)

        def forward(self, ids, off, lens, T):
            v = self.bag(ids, off)
            if a.model == "dssm":
                return self.net(v)
            v = v.view(lens.shape[0], T, E)                            # (B, T, E)
            if a.model == "cnn_dssm":
                h = torch.tanh(self.conv(v.transpose(1, 2)))          # (B, 300, T)
                pad = torch.arange(T)[None, :] >= lens[:, None]        # (B, T)
                m = h.masked_fill(pad[:, None, :], float("-inf")).amax(2)
                return torch.tanh(self.out(m))
            return torch.tanh(self.out(self.rnn(v, lens)))

    tq, td = Tower(), Tower()
    params = list(tq.parameters()) + list(td.parameters())
    bags = [tq.bag.weight, td.bag.weight]
    if sparse:
        opts = [torch.optim.Adam([p for p in params if all(p is not b for b in bags)], lr=1e-3),
                torch.optim.SparseAdam(bags, lr=1e-3)]
    else:
        opts = [torch.optim.Adam(params, lr=1e-3)]
    return tq, td, opts


def run(torch, a, q, d, doc_id, vocab, sparse, lstm):
    """Pairs per second of one variant: --warmup untimed steps, then --pairs pairs or
    --max-seconds, whichever ends first."""
    F = torch.nn.functional
    torch.manual_seed(0)
    tq, td, opts = build(torch, a, vocab, sparse, lstm)
    per_word = a.model != "dssm"
    doc_id_t = torch.from_numpy(doc_id)

    def unit(v):
        return v * torch.rsqrt((v * v).sum(1, keepdim=True) + 1e-8)

    def step(rows):
        qi, qo, ql, qT = batch_bags(q, rows, per_word)
        di, do, dl, dT = batch_bags(d, rows, per_word)
        yq = tq(torch.from_numpy(qi), torch.from_numpy(qo), torch.from_numpy(ql), qT)
        yd = td(torch.from_numpy(di), torch.from_numpy(do), torch.from_numpy(dl), dT)
        z = GAMMA * unit(yq).mm(unit(yd).t())                          # (B, B) scaled cosines
        ids = doc_id_t[torch.from_numpy(rows)]
        same = (ids[:, None] == ids[None, :]) & ~torch.eye(len(rows), dtype=torch.bool)
        loss = F.cross_entropy(z.masked_fill(same, float("-inf")), torch.arange(len(rows)))
        for o in opts:
            o.zero_grad(set_to_none=True)
        loss.backward()
        for o in opts:
            o.step()

    n = len(doc_id)
    rng = np.random.RandomState(1)
    perm = rng.permutation(n)
    for s in range(a.warmup):                          # allocator, thread pool, JIT, optimizer state
        step(perm[s * a.batch:(s + 1) * a.batch])
    total = a.pairs if a.pairs > 0 else n
    perm = rng.permutation(n)
    seen, pos, t0 = 0, 0, time.perf_counter()
    while seen < total and (a.max_seconds <= 0 or time.perf_counter() - t0 < a.max_seconds):
        if pos >= n:
            perm, pos = rng.permutation(n), 0
        rows = perm[pos:pos + min(a.batch, total - seen)]
        step(rows)
        pos += len(rows)
        seen += len(rows)
    return seen / (time.perf_counter() - t0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--model", choices=["dssm", "cnn_dssm", "lstm_dssm"], required=True)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--pairs", type=int, default=0, help="timed training pairs per variant; 0 = one epoch")
    ap.add_argument("--max-seconds", type=float, default=0, help="stop a variant's timing after this (0: no limit)")
    ap.add_argument("--warmup", type=int, default=5, help="untimed steps first")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--sparse", default="1,0", help="variants: 1 = sparse bag gradients + SparseAdam, 0 = dense Adam")
    ap.add_argument("--lstm", default="peephole,jit,nn",
                    help="lstm_dssm variants: peephole (Python loop), jit (the loop through torch.jit.script), nn (nn.LSTM, no peepholes)")
    ap.add_argument("--flops", action="store_true", help="print the counted flops per pair and exit (numpy only)")
    a = ap.parse_args()
    q, d, doc_id, vocab = load(a.data)
    f, lq, ld = flops_per_pair(q, d, a.model) if a.model == "cnn_dssm" else (0, q[1].mean(), d[1].mean())
    if a.model == "cnn_dssm":
        print(f"{a.model} flops_per_pair {f:.0f} mean_query_words {lq:.3f} mean_doc_words {ld:.3f}", flush=True)
    if a.flops:
        return
    import torch
    torch.set_num_threads(a.threads)
    print(tuning(torch), flush=True)
    kinds = a.lstm.split(",") if a.model == "lstm_dssm" else ["-"]
    best = {}
    for kind in kinds:
        for sp in [int(x) for x in a.sparse.split(",")]:
            v = run(torch, a, q, d, doc_id, vocab, sp, kind)
            var = (f"{kind}," if kind != "-" else "") + ("sparse" if sp else "dense")
            print(f"{a.model} pairs_per_sec {v:.1f} {var}", flush=True)
            fam = a.model + ("_nn" if kind == "nn" else "")
            if v > best.get(fam, (0, ""))[0]:
                best[fam] = (v, var)
    # the figures bench.sh reads: the fastest variant of the model, and (lstm_dssm) of the
    # nn.LSTM bound, which is a different, cheaper model (no peepholes)
    for fam, (v, var) in best.items():
        print(f"{fam} best_pairs_per_sec {v:.1f} {var}")


if __name__ == "__main__":
    main()
