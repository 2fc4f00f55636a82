"""C++ vs Python speed of sequence packing and DP balancing at 8k, 32k and 128k sequences.

Random lengths (uniform in [--min-length, --max-length]); times are the best of --repeats runs,
including the list conversions in and out of the extension. Also checks both give the same result.
"""
import random
import time

from oreal_mega import packing
from oreal_mega.bench.machine import print_header


def add_arguments(parser):
    parser.add_argument("--sizes", type=int, nargs="+", default=[8192, 32768, 131072],
                        help="numbers of sequences (default: 8192 32768 131072)")
    parser.add_argument("--min-length", type=int, default=64)
    parser.add_argument("--max-length", type=int, default=16384)
    parser.add_argument("--dp-size", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=65536, help="micro-batch token budget")
    parser.add_argument("--attention-coef", type=float, default=2e-5,
                        help="quadratic cost term (about 1/(12*hidden) for a dense model)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)


def best_time(fn, repeats):
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def run(args):
    if not hasattr(packing._C, "plan_dp_microbatches"):
        raise RuntimeError("oreal_mega._C lacks the packing functions; "
                           "run pip install -e . --no-deps --no-build-isolation")
    print_header()
    print(f"lengths uniform in [{args.min_length}, {args.max_length}], dp_size={args.dp_size}, "
          f"max_tokens={args.max_tokens}, attention_coef={args.attention_coef}, best of {args.repeats}")
    jobs = {
        "balance_partitions": lambda lengths, backend: packing.balance_partitions(
            lengths, args.dp_size, attention_coef=args.attention_coef, backend=backend),
        "pack_microbatches": lambda lengths, backend: packing.pack_microbatches(
            lengths, args.max_tokens, backend=backend),
        "plan_dp_microbatches": lambda lengths, backend: packing.plan_dp_microbatches(
            lengths, args.dp_size, args.max_tokens, attention_coef=args.attention_coef, backend=backend),
    }
    print(f"{'sequences':>9}  {'function':<21} {'python ms':>10} {'C++ ms':>9} {'speed-up':>9}  same")
    rng = random.Random(args.seed)
    all_same = True
    for size in args.sizes:
        lengths = [rng.randint(args.min_length, args.max_length) for _ in range(size)]
        for name, job in jobs.items():
            py_time, py_result = best_time(lambda: job(lengths, "python"), args.repeats)
            cpp_time, cpp_result = best_time(lambda: job(lengths, "cpp"), args.repeats)
            print(f"{size:>9}  {name:<21} {py_time * 1e3:>10.1f} {cpp_time * 1e3:>9.2f} "
                  f"{py_time / cpp_time:>8.1f}x  {'yes' if py_result == cpp_result else 'NO'}")
            all_same = all_same and py_result == cpp_result
    return 0 if all_same else 1
