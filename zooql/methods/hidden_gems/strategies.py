"""Strategy implementations for :func:`zooql.methods.hidden_gems.discover.discover`.

Each strategy is ``fn(search: Search, k: int, **opts) -> None``; it spends at most
``search.B`` evaluations through ``search.ask*`` (which enforces the budget and the
no-repeat rule), and records eliminations and rounds on the search object.
Schedules (the plan EXPLAIN shows) are built by the ``*_plan`` functions, which the
strategies execute verbatim.
"""
from __future__ import annotations

import math

import numpy as np

from zooql.methods.hidden_gems.core import Round, Search, halving_sizes, plan_counts

# Paper Table 4 (Kahana, Horwitz & Hoshen 2026): queries per model in rounds 1..5 for a
# per-model budget N; round sizes: all models -> 100 -> 50 -> 25 -> 12.
PAPER_TABLE4: dict[int, tuple[int, ...]] = {
    10: (6, 16, 30, 60, 120),
    25: (15, 40, 75, 150, 300),
    50: (30, 75, 150, 300, 600),
    100: (60, 150, 300, 600, 1200),
    200: (120, 300, 600, 1200, 2400),
}
PAPER_TABLE4_M = 1510   # smallest tree size for which every row of Table 4 fits its budget


# ---------------------------------------------------------------------------
# schedules
# ---------------------------------------------------------------------------

def _rounds(sizes, q) -> list[Round]:
    return [Round(i, int(n), int(t), int(n) * int(t)) for i, (n, t) in enumerate(zip(sizes, q))]


def aggressive_plan(M: int, B: int, Q: int, k: int = 1, keep: int = 100, first_frac: float = 0.6,
                    final: int | None = None, paper_table4: bool = False) -> tuple[list[int], list[int]]:
    """The paper's aggressive schedule (see the module docstring of ``discover``).

    Round 1 evaluates all ``M`` models with ``first_frac`` of the budget
    (``q1 = first_frac * B / M``) and keeps ``K = min(keep, M)``; then ``K, K/2, K/4, ...``
    models (floor) down to ``final`` (default ``max(k+1, K // 8)``, i.e. 12 for K = 100)
    share the rest equally per round, so per-model queries double each round:
    ``q_r = (1 - first_frac) * B / L / (K / 2**(r-2))`` with ``L`` later rounds.
    """
    K = min(int(keep), M)
    stop = final if final is not None else (max(k + 1, K // 8) if K > k + 1 else K)
    later = halving_sizes(K, stop)
    L = len(later)
    sizes = [M] + later
    nominal = [float(M)] + [K / 2 ** j for j in range(L)]
    weights = [first_frac] + [(1.0 - first_frac) / L] * L
    if M <= k:
        return [M], [min(Q, B // max(M, 1))]
    if paper_table4 and K == 100 and L == 4 and B % M == 0 and (B // M) in PAPER_TABLE4:
        row = PAPER_TABLE4[B // M]
        # q_r = row[r] * M / 1510 for the later rounds: exactly Table 4 at M = 1510
        weights = [first_frac] + [row[r + 1] * nominal[r + 1] * M / (PAPER_TABLE4_M * B) for r in range(L)]
    q = plan_counts(sizes, weights, nominal, B, Q)
    return sizes, q


def halving_plan(M: int, B: int, Q: int, k: int = 1) -> tuple[list[int], list[int]]:
    """Standard Sequential Halving (Karnin et al. 2013): ``ceil(log2(M/k))`` rounds with an
    equal share of the budget; survivors halve (ceil) each round."""
    sizes = [M]
    while sizes[-1] > k and sizes[-1] > 1:
        nxt = max(k, int(math.ceil(sizes[-1] / 2)))
        if nxt == sizes[-1]:
            break
        sizes.append(nxt)
    if len(sizes) > 1:
        sizes = sizes[:-1]          # the last entry is what survives the last round
    R = len(sizes)
    q = plan_counts(sizes, [1.0 / R] * R, [float(s) for s in sizes], B, Q)
    return sizes, q


def _run_rounds(S: Search, sizes: list[int], q: list[int], k: int, correlated: bool,
                cumulative: bool = True) -> None:
    """Execute a fixed round plan. ``cumulative``: rank by the running mean over every
    query a model answered (default); ``False``: by this round's answers only, as in the
    textbook Sequential Halving of Karnin et al. (a round without queries falls back to
    the running mean)."""
    alive = np.arange(S.M)
    for r, (n_r, q_r) in enumerate(zip(sizes, q)):
        assert alive.size == n_r, (alive.size, n_r)
        before = S.spent
        round_mean = None
        if q_r > 0:
            if correlated:
                sc = S.ask_shared(alive, q_r)
                if sc.shape[1]:
                    round_mean = sc.mean(axis=1)
            else:
                mm, sc = S.ask_stream(alive, q_r)
                if sc.size:
                    tot = np.bincount(mm, weights=sc, minlength=S.M)[alive]
                    cnt = np.bincount(mm, minlength=S.M)[alive]
                    round_mean = np.where(cnt > 0, tot / np.maximum(cnt, 1), np.nan)
        cost = S.spent - before
        S.rounds.append(Round(r, int(alive.size), int(cost // max(alive.size, 1)), int(cost)))
        keep = sizes[r + 1] if r + 1 < len(sizes) else min(k, alive.size)
        new = S.top(alive, keep, scores=None if (cumulative or round_mean is None) else round_mean)
        gone = np.setdiff1d(alive, new)
        S.eliminated_round[gone] = r
        alive = np.sort(new)


def run_gems(S: Search, k: int, correlated: bool = True, schedule: str = "aggressive",
             cumulative: bool = True, **opts) -> None:
    if schedule == "aggressive":
        sizes, q = aggressive_plan(S.M, S.B, S.Q, k, **_pick(opts, "keep", "first_frac", "final", "paper_table4"))
    else:
        sizes, q = halving_plan(S.M, S.B, S.Q, k)
    _run_rounds(S, sizes, q, k, correlated, cumulative)


def run_sequential_halving(S: Search, k: int, **opts) -> None:
    run_gems(S, k, correlated=bool(opts.get("correlated", False)), schedule="halving",
             cumulative=bool(opts.get("cumulative", True)))


HYBRID_SWITCH = 128   # shared queries once at most this many models survive ...
HYBRID_MIN_COUNT = 64  # ... and each has answered at least this many queries (design trees)


def _stream_mask(S: Search, models: np.ndarray) -> np.ndarray:
    """[len(models), Q] bool: the queries each model already answered from its own stream."""
    mask = np.zeros((models.size, S.Q), dtype=bool)
    if S._stride is None:
        return mask
    for i, m in enumerate(models):
        pos = np.arange(S.counts[m], dtype=np.int64)
        mask[i, S.perm[(S._stride[m] * pos + S._offset[m]) % S.Q]] = True
    return mask


def _ask_shared_rest(S: Search, alive: np.ndarray, asked: np.ndarray, t: int) -> None:
    """Every model of ``alive`` answers its next ``t`` not-yet-answered queries in the order
    of the shared permutation, so the finalists end up answering the same queries."""
    free = ~asked[:, S.perm]
    pick = free & (np.cumsum(free, axis=1) <= t)
    ii, jj = np.nonzero(pick)
    if ii.size > S.remaining:
        ii, jj = ii[:S.remaining], jj[:S.remaining]
    if ii.size:
        S.ask(alive[ii], S.perm[jj])
        asked[ii, S.perm[jj]] = True


def run_halving_hybrid(S: Search, k: int, switch: int | None = None, min_count: int | None = None,
                       **opts) -> None:
    """Sequential Halving (the plan of :func:`halving_plan`, ranking by the running mean)
    with *independent* sampling while more than ``switch`` models survive and *shared*
    queries after that. Independent streams keep a cluster of near-identical copies from
    rising or falling together at the early cuts (one lucky cluster taking every kept slot);
    among the few finalists, answering the same queries makes their comparison a paired one
    (the shared query difficulty cancels), which is what the close finals need."""
    switch = HYBRID_SWITCH if switch is None else int(switch)
    min_count = HYBRID_MIN_COUNT if min_count is None else int(min_count)
    sizes, q = halving_plan(S.M, S.B, S.Q, k)
    alive, asked = np.arange(S.M), None
    for r, (n_r, q_r) in enumerate(zip(sizes, q)):
        before = S.spent
        if q_r > 0 and asked is None and (n_r > switch or int(S.counts[alive].min()) < min_count):
            S.ask_stream(alive, q_r)
        elif q_r > 0:
            if asked is None:
                asked = _stream_mask(S, alive)
            _ask_shared_rest(S, alive, asked, q_r)
        cost = S.spent - before
        S.rounds.append(Round(r, int(alive.size), int(cost // max(alive.size, 1)), int(cost)))
        keep = sizes[r + 1] if r + 1 < len(sizes) else min(k, alive.size)
        new = S.top(alive, keep)
        S.eliminated_round[np.setdiff1d(alive, new)] = r
        if asked is not None:
            asked = asked[np.isin(alive, new)]
        alive = np.sort(new)


def run_uniform(S: Search, k: int, correlated: bool = True, **opts) -> None:
    """Every model answers ``floor(B / M)`` queries (the same ones when correlated)."""
    t = min(S.Q, S.B // S.M)
    alive = np.arange(S.M)
    if t > 0:
        if correlated:
            S.ask_shared(alive, t)
        else:
            S.ask_stream(alive, t)
    S.rounds.append(Round(0, S.M, int(t), int(t * S.M)))
    new = S.top(alive, k)
    S.eliminated_round[np.setdiff1d(alive, new)] = 0


def _pick(d: dict, *names):
    return {n: d[n] for n in names if n in d}


# ---------------------------------------------------------------------------
# successive rejects (Audibert & Bubeck 2010)
# ---------------------------------------------------------------------------

def run_successive_rejects(S: Search, k: int, **opts) -> None:
    """K-1 phases; phase j pulls every active arm up to ``n_j`` samples with
    ``n_j = ceil((B - K) / (logbar(K) (K + 1 - j)))`` and rejects the empirically worst.
    Phases without new pulls are merged (their rejections use the same information).
    Independent per-model query streams; counts capped at the pool size."""
    K = S.M
    if K <= k:
        return
    logbar = 0.5 + sum(1.0 / i for i in range(2, K + 1))
    active = np.arange(K)
    j = 1
    while active.size > k:
        n_j = int(math.ceil(max(S.B - K, 0) / (logbar * (K + 1 - j))))
        n_j = max(n_j, 1 if S.B >= K else 0)
        target = min(n_j, S.Q)
        need = np.maximum(target - S.counts[active], 0)
        if need.sum() > S.remaining:             # rounding: share what is left fairly
            share = S.remaining // active.size
            need = np.minimum(need, share)
        if need.sum() > 0:
            S.ask_stream(active, need)
        # how many consecutive future phases bring no new pulls -> reject them together
        n_rej = 1
        while active.size - n_rej > k:
            nj2 = int(math.ceil(max(S.B - K, 0) / (logbar * (K + 1 - (j + n_rej)))))
            if min(nj2, S.Q) > target and S.remaining > 0:
                break
            n_rej += 1
        worst = S.top(active, active.size - n_rej)
        gone = np.setdiff1d(active, worst)
        S.eliminated_round[gone] = j - 1
        active = np.sort(worst)
        j += n_rej


# ---------------------------------------------------------------------------
# batched index policies (UCB family) and top-two Thompson sampling
# ---------------------------------------------------------------------------

def _init_pulls(S: Search) -> None:
    """Pull every arm once (a random subset if the budget is smaller than M)."""
    n = min(S.M, S.remaining)
    arms = np.arange(S.M) if n == S.M else np.sort(S.rng.choice(S.M, size=n, replace=False))
    if arms.size:
        S.ask_stream(arms, 1)


def _waterfill(mu: np.ndarray, w: np.ndarray, T: np.ndarray, cap: np.ndarray, b: int) -> np.ndarray:
    """Batched UCB: hand out ``b`` pulls greedily by the index ``mu + w / sqrt(T)``, as if
    each pull only raised the count (``mu`` fixed). Solved as a water level ``tau``:
    arm ``i`` is pulled until its index drops to ``tau``. Returns pulls per arm (<= cap)."""
    room = np.maximum(cap - T, 0)
    if b <= 0 or room.sum() == 0:
        return np.zeros_like(T)
    if room.sum() <= b:
        return room

    width = int(min(b, room.max()))
    if T.size * width <= 200_000:   # small case: exact greedy via the top-b candidate indices
        j = np.arange(width)
        cand = mu[:, None] + w[:, None] / np.sqrt(np.maximum(T[:, None] + j[None, :], 1))
        cand = np.where(j[None, :] < room[:, None], cand, -np.inf)
        flat = np.argpartition(-cand.ravel(), b - 1)[:b]
        flat = flat[np.isfinite(cand.ravel()[flat])]
        return np.bincount(flat // width, minlength=T.size).astype(np.int64)

    def pulls(tau):
        gap = tau - mu
        pos = gap > 0
        target = np.where(pos, np.ceil((w / np.where(pos, gap, 1.0)) ** 2), np.inf)
        return np.minimum(np.maximum(target - T, 0), room)

    idx = mu + w / np.sqrt(np.maximum(T, 1))
    lo, hi = float(np.min(mu)), float(np.max(idx)) + 1e-9   # pulls(hi) == 0
    for _ in range(24):
        mid = 0.5 * (lo + hi)
        if pulls(mid).sum() > b:
            lo = mid
        else:
            hi = mid
    p = pulls(hi)
    rest = int(b - p.sum())
    if rest > 0:   # the remaining few go to the highest current indices
        cur = mu + w / np.sqrt(np.maximum(T + p, 1))
        cur = np.where(p < room, cur, -np.inf)
        top = np.argpartition(-cur, min(rest, cur.size - 1))[:rest]
        top = top[np.isfinite(cur[top])]
        p[top] += 1
    return p.astype(np.int64)


def _index_policy(S: Search, k: int, kind: str, n_steps: int = 50, **opts) -> None:
    _init_pulls(S)
    cap = np.full(S.M, S.Q, dtype=np.int64)
    steps = max(1, int(n_steps))
    a_e = opts.get("a")
    if a_e is None:   # UCB-E exploration constant (25/36)(B-K)/H with H ~ M / gap^2, gap 0.05
        a_e = 25.0 / 36.0 * max(S.B - S.M, 1) / (S.M / 0.05 ** 2)
    c = float(opts.get("c", 1.0))
    while S.remaining > 0:
        b = int(min(S.remaining, max(1, math.ceil(S.B / steps))))
        T = S.counts.astype(np.float64)
        mu = S.means()
        mu = np.where(np.isnan(mu), 0.5, mu)
        t_total = max(S.spent + b, 2)
        if kind == "ucb":
            w = np.full(S.M, c * math.sqrt(2.0 * math.log(t_total)))
        elif kind == "ucb_e":
            w = np.full(S.M, math.sqrt(float(a_e)))
        else:   # ucb_stddev: empirical-std UCB, std floored by a weak prior
            var = (S.sumsq - S.sums ** 2 / np.maximum(T, 1)) / np.maximum(T - 1, 1)
            var = (var * T + 0.25 * 2) / (T + 2)      # shrink towards 0.25 with 2 pseudo-pulls
            w = c * np.sqrt(2.0 * math.log(t_total) * np.maximum(var, 1e-4))
        p = _waterfill(mu, w, T, cap, b)
        if p.sum() == 0:
            break
        arms = np.nonzero(p)[0]
        S.ask_stream(arms, p[arms])
    _finish_by_mean(S, k)


def _finish_by_mean(S: Search, k: int) -> None:
    """Adaptive strategies recommend the best empirical mean among arms with the most
    evidence: arms are ranked by mean after discarding arms with fewer than 1/4 of the
    pulls of the most-pulled arm (the standard 'most played / best mean' compromise)."""
    mu = S.means()
    T = S.counts
    ok = T >= max(1, T.max() // 4)
    score = np.where(ok, np.where(np.isnan(mu), -np.inf, mu), -np.inf)
    best = S.top(np.arange(S.M), k, scores=score)
    S.eliminated_round[:] = 0
    S.eliminated_round[best] = -1


def run_ucb(S, k, **o):
    _index_policy(S, k, "ucb", **o)


def run_ucb_e(S, k, **o):
    _index_policy(S, k, "ucb_e", **o)


def run_ucb_stddev(S, k, **o):
    _index_policy(S, k, "ucb_stddev", **o)


def run_ttts(S: Search, k: int, n_steps: int = 50, beta: float = 0.5, n_samples: int = 32,
             posterior: str = "beta", **opts) -> None:
    """Top-two Thompson sampling (Russo 2016), batched. Posterior per arm: Beta(1+s, 1+f)
    with fractional successes ``s = sum of scores`` (sampled through its moment-matched
    Gaussian for speed), or ``posterior='gaussian'`` (mean, var/T). Each step draws
    ``n_samples`` posterior samples; the leader of a sample is its argmax and the
    challenger is the argmax of a fresh sample with the leader excluded. The step's
    pulls are split ``beta : 1-beta`` over the leaders' and challengers' frequencies."""
    _init_pulls(S)
    steps = max(1, int(n_steps))
    rng = S.rng
    rows = np.arange(n_samples)
    while S.remaining > 0:
        b = int(min(S.remaining, max(1, math.ceil(S.B / steps))))
        T = S.counts.astype(np.float64)
        if posterior == "gaussian":
            mu = np.where(T > 0, S.sums / np.maximum(T, 1), 0.5)
            var = (S.sumsq - S.sums ** 2 / np.maximum(T, 1)) / np.maximum(T - 1, 1)
            sd = np.sqrt((np.maximum(var, 0) * T + 0.25) / (T + 1) / (T + 1))
        else:
            a_ = 1.0 + S.sums
            b_ = 1.0 + T - S.sums
            mu = a_ / (a_ + b_)
            sd = np.sqrt(a_ * b_ / ((a_ + b_) ** 2 * (a_ + b_ + 1)))
        full = S.counts >= S.Q
        th = mu + sd * rng.standard_normal((n_samples, S.M))
        lead = np.argmax(th, axis=1)
        th2 = mu + sd * rng.standard_normal((n_samples, S.M))
        th2[rows, lead] = -np.inf
        chal = np.argmax(th2, axis=1)
        pi = beta * np.bincount(lead, minlength=S.M) + (1 - beta) * np.bincount(chal, minlength=S.M)
        pi = np.where(full, 0.0, pi)
        if pi.sum() == 0:
            pi = np.where(full, 0.0, 1.0)
            if pi.sum() == 0:
                break
        pi = pi / pi.sum()
        p = np.floor(pi * b).astype(np.int64)
        rest = b - int(p.sum())
        if rest > 0:
            frac = pi * b - p
            top = np.argsort(-frac)[:rest]
            p[top] += 1
        p = np.minimum(p, S.Q - S.counts)
        if p.sum() == 0:
            break
        arms = np.nonzero(p)[0]
        S.ask_stream(arms, p[arms])
    _finish_by_mean(S, k)
