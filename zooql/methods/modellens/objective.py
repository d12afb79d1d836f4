"""ModelLens' training objective: the per-list ranking loss (ListNet or BPR) plus an MSE term,
the expected-dropout cases and the L2 penalties (used by ``Recommender.fit``)."""
from __future__ import annotations

import numpy as np

def _list_loss(cfg: dict, Y: np.ndarray, mask: np.ndarray, rng):
    """The per-step data loss: ListNet (or BPR pairs) over each list plus an MSE term."""
    import torch

    L = Y.shape[0]
    Yt, Mt = torch.from_numpy(Y), torch.from_numpy(mask)
    tau = cfg["temperature"]
    pos_lists = [np.nonzero(mask[l])[0] for l in range(L)] if cfg["loss"] == "bpr" else None
    p_true = torch.softmax(torch.where(Mt, Yt / tau, torch.full_like(Yt, -1e9)), dim=1)
    n_obs = Mt.sum().clamp(min=1)

    def bpr(pred):
        ii, jj, ll = [], [], []
        for l in range(L):
            obs = pos_lists[l]
            if len(obs) < 2:
                continue
            a = rng.choice(obs, cfg["bpr_pairs"])
            b = rng.choice(obs, cfg["bpr_pairs"])
            ya, yb = Y[l, a], Y[l, b]
            keep = ya != yb
            a, b = np.where(ya > yb, a, b)[keep], np.where(ya > yb, b, a)[keep]
            ii.append(a)
            jj.append(b)
            ll.append(np.full(len(a), l))
        ii_t, jj_t, ll_t = (torch.from_numpy(np.concatenate(x)) for x in (ii, jj, ll))
        return torch.nn.functional.softplus(-(pred[ll_t, ii_t] - pred[ll_t, jj_t])).mean()

    def list_loss(pred):
        if cfg["loss"] == "listnet":
            logp = torch.log_softmax(torch.where(Mt, pred / tau, torch.full_like(pred, -1e9)), dim=1)
            rank_loss = -(p_true * torch.where(Mt, logp, torch.zeros_like(logp))).sum(1).mean()
        else:
            rank_loss = bpr(pred)
        mse = (torch.where(Mt, pred - Yt, torch.zeros_like(pred)) ** 2).sum() / n_obs
        return cfg["rank_weight"] * rank_loss + cfg["mse_weight"] * mse

    return list_loss


def _dropout_cases(p_drop: float, p_drop_d: float, no_m, no_d, M: int, D: int) -> list:
    """'Expected' dropout: the four (model ID kept/dropped) x (dataset ID kept/dropped) cases,
    evaluated every step and weighted by their probability -- the expectation of
    DropoutNet's random masks without the gradient noise. -> [(weight, drop_m, drop_d)]."""
    import torch

    all_m = torch.ones(M, dtype=torch.bool)
    all_d = torch.ones(D, dtype=torch.bool)
    return [(w, dm, dd) for w, dm, dd in (
        ((1 - p_drop) * (1 - p_drop_d), no_m, no_d),
        (p_drop * (1 - p_drop_d), all_m, no_d),
        ((1 - p_drop) * p_drop_d, no_m, all_d),
        (p_drop * p_drop_d, all_m, all_d)) if w > 0]


def _penalty(P: dict, cfg: dict, n_features: int):
    """L2 penalties of the latent factors, the feature and text towers and the attention."""
    l2 = cfg["reg"] * ((P["U"] ** 2).sum(1).mean() + (P["V"] ** 2).sum(1).mean()
                       + (P["b"] ** 2).mean() + ((P["W"] - 1) ** 2).mean())
    l2 = l2 + cfg["feat_reg"] * ((P["F1"] ** 2).sum() / max(n_features, 1)
                                 + (P["F2"] ** 2).mean() + (P["T"] ** 2).sum() / 384)
    return l2 + cfg["att_reg"] * (P["a"] ** 2).mean()


