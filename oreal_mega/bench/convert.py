"""GB/s of HF export (megatron → safetensors) and HF load (safetensors → megatron), one process.

Also timed: the gather-and-rename generator alone (`iter_hf_tensors`, no disk), the path that
weight sync to vLLM takes.

The model comes from an HF config.json with megatron's random initialisation (no download).
Export is timed from the first gather to the renamed directory (no fsync); load reads the
export just written, so its files are likely in the page cache. Best and median of --repeats.
"""
import json
import statistics
import tempfile
import time
from pathlib import Path

from oreal_mega.bench.machine import print_header
from oreal_mega.models.builder import DTYPES


def add_arguments(parser) -> None:
    parser.add_argument("config", type=Path, help="HF config.json (or a directory holding one)")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="bfloat16")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-shard-gb", type=float, default=2.0)
    parser.add_argument("--dir", type=Path, help="where to write the export (default: a temporary "
                        "directory; the disk it lives on is part of what is measured)")


def _timed(fn, repeats: int) -> list[float]:
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        seconds.append(time.perf_counter() - start)
    return seconds


def _rate(seconds: list[float], gigabytes: float) -> str:
    best, median = min(seconds), statistics.median(seconds)
    return (f"best {best:.3f} s ({gigabytes / best:.2f} GB/s), median {median:.3f} s "
            f"({gigabytes / median:.2f} GB/s) over {len(seconds)} runs")


def run(args) -> int:
    from oreal_mega.distributed import ParallelConfig, init_distributed, shutdown
    from oreal_mega.models.builder import build_model
    from oreal_mega.models.hf_config import parse_arch, read_hf_config
    from oreal_mega.weights.hf_export import export_hf, iter_hf_tensors
    from oreal_mega.weights.hf_load import load_hf_weights

    config = read_hf_config(args.config)
    arch = parse_arch(config, where=str(args.config))
    init_distributed(ParallelConfig(), arch.num_layers)
    try:
        with tempfile.TemporaryDirectory(dir=args.dir) as work:
            src, out = Path(work) / "src", Path(work) / "export"
            src.mkdir()
            (src / "config.json").write_text(json.dumps(config))
            chunks = build_model(arch, args.dtype)
            parameters = sum(p.numel() for chunk in chunks for p in chunk.parameters())
            export_seconds = _timed(lambda: export_hf(chunks, arch, out, src, overwrite=True,
                                                      max_shard_bytes=int(args.max_shard_gb * 1e9)),
                                    args.repeats)
            gather_seconds = _timed(lambda: sum(1 for _ in iter_hf_tensors(chunks, arch)),
                                    args.repeats)
            files = sorted(out.glob("*.safetensors"))
            gigabytes = sum(f.stat().st_size for f in files) / 1e9
            load_seconds = _timed(lambda: load_hf_weights(chunks, arch, out), args.repeats)
    finally:
        shutdown()
    print_header()
    print(f"model: {args.config} ({arch.family}, {parameters / 1e6:.1f} M parameters, {args.dtype}), "
          f"{gigabytes:.3f} GB in {len(files)} safetensors shards")
    print(f"gather: {_rate(gather_seconds, gigabytes)} (iter_hf_tensors, no disk)")
    print(f"export: {_rate(export_seconds, gigabytes)}")
    print(f"load:   {_rate(load_seconds, gigabytes)}")
    return 0
