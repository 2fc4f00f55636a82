"""Pass@k and the summary statistics of an evaluation."""
from collections import Counter
from math import comb

GROUP_FIELDS = ("level", "subject", "data_source")  # record fields the summary breaks down by: MATH's, verl's


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from `n` samples of which `c` are correct (Chen et al. 2021, Codex):
    the probability that a random k-subset of the n samples holds at least one correct one,
    1 - C(n-c, k) / C(n, k). Exact integer binomials, so no cancellation for large n."""
    if not 0 <= c <= n:
        raise ValueError(f"need 0 <= c <= n, got c={c}, n={n}")
    if not 1 <= k <= n:
        raise ValueError(f"need 1 <= k <= n, got k={k}, n={n}")
    return 1.0 - comb(n - c, k) / comb(n, k)


def status_counts(statuses) -> dict[str, int]:
    return dict(sorted(Counter(statuses).items()))


def mean(values) -> float:
    values = list(values)
    return sum(values) / len(values) if values else float("nan")
