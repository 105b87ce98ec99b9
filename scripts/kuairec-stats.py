#!/usr/bin/python3
"""How far video statistics alone go on the KuaiRec sample (issue 12).

`foryou eval kuairec` asks the engine to beat the per-video mean watch ratio
by 0.01 NDCG@10 on every split seed. This script ranks each user's held-out
videos by statistics of the training plays alone, on the very same split
(src/eval/kuairec.cc: per user a seeded 80/20 shuffle, the same splitmix64),
and prints each one's NDCG@10 minus the video mean's, per seed:

  fe_log     two-way fixed effects on log(1 + watch ratio): user and video
             effects fitted by alternating means (video effects shrunk by 3
             plays); ranks by the video effect
  fe+mf      the same plus a rank-8 matrix factorisation of the residuals
             (alternating least squares, L2 10): the personal part
  pct        the mean over a video's plays of each play's percentile among
             all of its viewer's plays (offline: the viewer's later plays
             count too), shrunk toward 0.5 by 2 plays
  pct_online the same with each play's percentile among its viewer's
             earlier plays only (the training order is the eval's: every
             user's first video, then every user's second, ...), as a
             server learning from the event stream could keep it

Needs numpy (Debian's python3-numpy; scripts/install-deps.sh). About two
minutes for six seeds on this machine.

  scripts/kuairec-stats.py [--file demo/kuairec/random.txt] [--seeds 1,2,3,4,5,42]
"""
import argparse
import sys

import numpy as np

MASK = (1 << 64) - 1


def mix64(x):  # util/coding.cc Mix64 (the splitmix64 finaliser)
    x = (x + 0x9E3779B97F4A7C15) & MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & MASK
    return x ^ (x >> 31)


def load(path):
    rows, order, videos = {}, [], {}
    with open(path) as f:
        for line in f:
            if not line.strip():
                continue
            u, v, r = line.strip().split(",")
            u, v, r = int(u), int(v), float(r)
            if u not in rows:
                rows[u] = []
                order.append(u)
            videos.setdefault(v, len(videos))
            rows[u].append((videos[v], r))
    return [rows[u] for u in order], len(videos)


def split(rows, seed):  # src/eval/kuairec.cc, RunKuaiRecEval
    train, test = [], []
    for ui, r in enumerate(rows):
        r = list(r)
        h = mix64(seed ^ ((ui * 0x9E3779B97F4A7C15) & MASK))
        for i in range(len(r), 1, -1):
            h = mix64(h)
            j = h % i
            r[i - 1], r[j] = r[j], r[i - 1]
        n = max(1, min(len(r) * 8 // 10, len(r) - 1))
        train.append(r[:n])
        test.append(r[n:])
    return train, test


def ndcg_at_10(scores, gains):
    order = np.argsort(-np.asarray(scores), kind="stable")
    g = np.asarray(gains)
    k = min(10, len(g))
    disc = 1 / np.log2(np.arange(2, 2 + k))
    ideal = (np.sort(g)[::-1][:k] * disc).sum()
    return (g[order][:k] * disc).sum() / ideal if ideal > 0 else None


def mean_ndcg(test, score):
    vals = [ndcg_at_10(score(u, [v for v, _ in t]), [r for _, r in t]) for u, t in enumerate(test)]
    vals = [x for x in vals if x is not None]
    return sum(vals) / len(vals)


def percentiles(uu, rr, n_users, online):
    out = np.zeros(len(rr))
    for u in range(n_users):
        idx = np.where(uu == u)[0]
        r = rr[idx]
        if online:  # among the viewer's earlier plays, with one prior play at 0.5
            for i in range(len(r)):
                prev = r[:i]
                out[idx[i]] = ((prev < r[i]).sum() + 0.5 * (prev == r[i]).sum() + 0.5) / (len(prev) + 1)
        else:
            ranks = np.argsort(np.argsort(r, kind="stable"), kind="stable")
            out[idx] = (ranks + 0.5) / len(r)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--file", default="demo/kuairec/random.txt")
    ap.add_argument("--seeds", default="1,2,3,4,5,42")
    args = ap.parse_args()
    rows, n_videos = load(args.file)
    names = ["fe_log", "fe+mf", "pct", "pct_online"]
    print("seed  video-mean NDCG@10  " + "  ".join(f"{n:>10}" for n in names), flush=True)
    sums = np.zeros(len(names))
    rng = np.random.default_rng(0)
    for seed in [int(s) for s in args.seeds.split(",")]:
        train, test = split(rows, seed)
        n_users = len(train)
        uu = np.array([u for u, t in enumerate(train) for _ in t])
        vv = np.array([v for t in train for v, _ in t])
        rr = np.array([r for t in train for _, r in t])
        count = np.bincount(vv, None, n_videos)
        prior = rr.mean()
        mean = (np.bincount(vv, rr, n_videos) + 5 * prior) / (count + 5)  # the eval's `pop`
        base = mean_ndcg(test, lambda u, v: mean[v])
        y = np.log1p(rr)
        a, b = np.zeros(n_users), np.zeros(n_videos)
        for _ in range(10):
            a = np.bincount(uu, y - b[vv], n_users) / np.bincount(uu, None, n_users)
            b = np.bincount(vv, y - a[uu], n_videos) / (count + 3)
        res = y - a[uu] - b[vv]
        k, lam = 8, 10.0
        p, q = rng.normal(0, 0.1, (n_users, k)), rng.normal(0, 0.1, (n_videos, k))
        by_u = [np.where(uu == u)[0] for u in range(n_users)]
        by_v = [np.where(vv == v)[0] for v in range(n_videos)]
        for _ in range(8):
            for u in range(n_users):
                qi = q[vv[by_u[u]]]
                p[u] = np.linalg.solve(qi.T @ qi + lam * np.eye(k), qi.T @ res[by_u[u]])
            for v in range(n_videos):
                if len(by_v[v]):
                    pi = p[uu[by_v[v]]]
                    q[v] = np.linalg.solve(pi.T @ pi + lam * np.eye(k), pi.T @ res[by_v[v]])
        pct = (np.bincount(vv, percentiles(uu, rr, n_users, False), n_videos) + 1.0) / (count + 2)
        pon = (np.bincount(vv, percentiles(uu, rr, n_users, True), n_videos) + 1.0) / (count + 2)
        deltas = np.array([
            mean_ndcg(test, lambda u, v: b[v]) - base,
            mean_ndcg(test, lambda u, v: b[v] + q[v] @ p[u]) - base,
            mean_ndcg(test, lambda u, v: pct[v]) - base,
            mean_ndcg(test, lambda u, v: pon[v]) - base,
        ])
        sums += deltas
        print(f"{seed:>4}  {base:18.4f}  " + "  ".join(f"{d:+10.4f}" for d in deltas), flush=True)
    print(" sum  " + " " * 18 + "  " + "  ".join(f"{s:+10.4f}" for s in sums))
    return 0


if __name__ == "__main__":
    sys.exit(main())
