"""`oreal-mega bench TARGET [options]`: benchmarks that print measured numbers with the machine
they ran on (`machine.py`). One module per target (`gpu-check`: gpu_check.py), each exposing
`add_arguments(parser)` and `run(args)`, imported only when chosen."""
import argparse
import importlib

# target: one-line description; the module is oreal_mega.bench.<target>
BENCHMARKS = {
    "packing": "C++ vs Python packing / DP balancing speed-up",
    "kernels": "fused LM-head log-prob / loss kernels vs naive PyTorch",
    "verifier": "verdicts per second, typical and pathological answers",
    "convert": "HF export and HF load GB/s (megatron ⇄ safetensors)",
    "sync": "trainer → vLLM weight sync seconds and GB/s",
    "train": "megatron forward+backward tokens/s and MFU, packed sequences",
    "gpu-check": "the prepared GPU check: kernel tests, OREAL run + resume, kernels, train, offload (one table)",
}


def add_arguments(parser):
    parser.add_argument("target", choices=BENCHMARKS, metavar="TARGET",
                        help="; ".join(f"{k}: {v}" for k, v in BENCHMARKS.items()))
    parser.add_argument("options", nargs=argparse.REMAINDER, help="options of the target (--help)")


def run(args):
    module = importlib.import_module(f"oreal_mega.bench.{args.target.replace('-', '_')}")
    parser = argparse.ArgumentParser(prog=f"oreal-mega bench {args.target}", description=BENCHMARKS[args.target])
    module.add_arguments(parser)
    return module.run(parser.parse_args(args.options))
