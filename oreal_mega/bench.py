"""`oreal-mega bench TARGET [options]`: benchmarks that print measured numbers with the machine
they ran on. Each target module exposes `add_arguments(parser)` and `run(args)` and is imported
only when chosen."""
import argparse
import importlib

# target: (module, one-line description)
BENCHMARKS = {
    "packing": ("oreal_mega.packing_bench", "C++ vs Python packing / DP balancing speed-up"),
    "kernels": ("oreal_mega.kernels.bench", "fused LM-head log-prob / loss kernels vs naive PyTorch"),
    "verifier": ("oreal_mega.verifier.bench", "verdicts per second, typical and pathological answers"),
    "convert": ("oreal_mega.weights.convert_bench", "HF export and HF load GB/s (megatron ⇄ safetensors)"),
    "sync": ("oreal_mega.rollout.sync_bench", "trainer → vLLM weight sync seconds and GB/s"),
    "train": ("oreal_mega.train_bench", "megatron forward+backward tokens/s and MFU, packed sequences"),
}


def add_arguments(parser):
    parser.add_argument("target", choices=BENCHMARKS, metavar="TARGET",
                        help="; ".join(f"{k}: {v[1]}" for k, v in BENCHMARKS.items()))
    parser.add_argument("options", nargs=argparse.REMAINDER, help="options of the target (--help)")


def run(args):
    module_name, summary = BENCHMARKS[args.target]
    module = importlib.import_module(module_name)
    parser = argparse.ArgumentParser(prog=f"oreal-mega bench {args.target}", description=summary)
    module.add_arguments(parser)
    return module.run(parser.parse_args(args.options))
