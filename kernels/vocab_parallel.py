"""Merging softmax statistics of vocab pieces: segments of one shard, and shards across TP ranks.

A piece of the vocab is summarised per token by m = max z, s = Σ exp(z−m), a = Σ exp(z−m)·(z−m).
Pieces merge exactly: with M = max m,  S = Σ s·e^(m−M),  A = Σ e^(m−M)·(a + s·(m−M)).
Then lse = M + log S and entropy = log S − A/S.
"""
import torch
import torch.distributed as dist


def merge_stats(m: torch.Tensor, s: torch.Tensor, a: torch.Tensor, dim: int):
    top = m.amax(dim=dim, keepdim=True)
    scale = torch.exp(m - top)
    shift = m - top
    return top.squeeze(dim), (s * scale).sum(dim), (scale * (a + s * shift)).sum(dim)


def all_reduce_stats(m, s, a, target, group):
    """Merge (m, s, a) and sum the target logit over the ranks of `group`: 2 collectives of a few floats/token."""
    top = m.clone()
    dist.all_reduce(top, op=dist.ReduceOp.MAX, group=group)
    scale = torch.exp(m - top)
    sums = torch.stack([s * scale, scale * (a + s * (m - top)), target])
    dist.all_reduce(sums, group=group)
    return top, sums[0], sums[1], sums[2]


_SHARD_RANGES: dict[tuple[int, object], tuple[int, int]] = {}


def shard_range(vocab_local: int, group, device) -> tuple[int, int]:
    """(first global id of this rank's shard, global vocab size); shards are contiguous blocks by rank.
    Collective the first time for a (local size, group): the answer is kept, so later calls (one per
    micro-batch and pass) cost no all-reduce and no host sync."""
    if group is None:
        return 0, vocab_local
    key = (vocab_local, group)
    if key not in _SHARD_RANGES:
        sizes = torch.zeros(dist.get_world_size(group), dtype=torch.int64, device=device)
        sizes[dist.get_rank(group)] = vocab_local
        dist.all_reduce(sizes, group=group)
        sizes = sizes.tolist()
        rank = dist.get_rank(group)
        _SHARD_RANGES[key] = (sum(sizes[:rank]), sum(sizes))
    return _SHARD_RANGES[key]


def all_reduce_sum_(tensor: torch.Tensor, group) -> torch.Tensor:
    if group is not None:
        dist.all_reduce(tensor, group=group)
    return tensor
