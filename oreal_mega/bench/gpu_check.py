"""`oreal-mega bench gpu-check [--out FILE]`: the one prepared GPU check, one table.

    (a) tests/test_kernels_triton.py: the Triton kernels compiled for the GPU (on CPU: interpreted)
    (b) 3 OREAL steps under torchrun with train.deterministic, rollouts replayed from a dump this check
        writes, token-RM on, reference and token-RM parked in host memory; stopped after step 0's
        checkpoint, resumed for steps 1-2 and compared with an uninterrupted run (every compared metric
        must be equal). Both runs ran step 0 fresh: their step 0 is compared in a row of its own, so
        that nondeterminism is reported as such and not as a resume difference. Two steps after the
        restart, so that step 2 shows whether step 1's update got the restored optimizer state (the
        token-RM's Adam moments of step 0; the policy is frozen at step 0)
    (c) the fused LM-head loss beside the naive path (`bench kernels`' functions)
    (d) megatron forward+backward of a model slice, tokens/s and MFU (`bench train`'s functions)
    (e) parking that slice in host memory and back (`models/offload.py`), seconds and GB

With CUDA it runs the sizes of `GPU` below (estimated 5-7 minutes on one H100/H200; it has not run
on a GPU yet). Without CUDA, the CPU mode (`CPU`: tiny shapes, gloo, Triton's interpreter) runs the
same code paths in under a minute; it is a smoke test of this script that CI runs
(tests/test_gpu_check.py), and its numbers are no benchmark. Each row says what ran, its result, its
numbers and PASS/FAIL; the exit status is 1 when a row fails. A stage that raises becomes a FAIL row
and the next stage still runs. `--out FILE` writes the table to FILE after every stage and every
subprocess's output to FILE with suffix .log.
"""
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml

import oreal_mega
from oreal_mega.bench import kernels as kernel_bench
from oreal_mega.bench import train as train_bench
from oreal_mega.bench.machine import machine_description

# the metrics of the resumed run that must equal the uninterrupted run's, step by step
COMPARED = ("loss", "kl", "entropy", "trm_loss", "policy_grad_norm", "trm_grad_norm", "pass_rate", "kept_samples")
QWEN2 = {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "hidden_act": "silu", "rms_norm_eps": 1e-6,
         "rope_theta": 1e6, "max_position_embeddings": 32768}
# the fused loss's gradients vs float64: bf16 as README's GPU check row (c), fp32 as kernels/README.md's tests
GRAD_TOLERANCE = {"bf16": 3e-3, "fp32": 1e-5}


@dataclass(frozen=True)
class Sizes:
    mode: str
    policy_name: str
    policy: dict  # HF config fields of the trained model, over testing/tiny.py's tiny Qwen2
    dtype: str  # model.dtype of the run and bench train's dtype
    dump: dict  # write_synthetic_dump's prompts, n, prompt_len, response_len
    micro_batch_tokens: int
    kernel_shapes: dict  # name -> (H, V)
    kernel_tokens: int
    kernel_dtype: str  # bench kernels' dtype name
    kernel_repeats: int
    slice_name: str
    slice: dict  # HF config of the bench train / offload slice
    train_tokens: tuple[int, ...]
    doc_len: int
    train_steps: int
    train_warmup: int
    timeout_s: int  # per subprocess


GPU = Sizes(
    mode="gpu",
    policy_name="Qwen2-0.5B-shaped",
    policy=dict(vocab_size=151936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                num_attention_heads=14, num_key_value_heads=2, max_position_embeddings=32768,
                rope_theta=1e6, tie_word_embeddings=True),  # Qwen2-0.5B's shape
    dtype="bfloat16",
    dump=dict(prompts=16, n=8, prompt_len=(64, 256), response_len=(128, 1024)),
    micro_batch_tokens=16384,
    kernel_shapes={name: kernel_bench.SHAPES[name] for name in ("qwen2.5-7b", "qwen2.5-32b")},
    kernel_tokens=16384, kernel_dtype="bf16", kernel_repeats=6,
    slice_name="Qwen2.5-7B 4-layer slice",
    slice=QWEN2 | dict(vocab_size=152064, hidden_size=3584, intermediate_size=18944, num_hidden_layers=4,
                       num_attention_heads=28, num_key_value_heads=4, tie_word_embeddings=False),
    train_tokens=(4096, 8192), doc_len=1024, train_steps=5, train_warmup=2,
    timeout_s=240,
)
CPU = Sizes(
    mode="cpu",
    policy_name="tiny Qwen2",
    policy=dict(tie_word_embeddings=True),  # the tiny Qwen2: 2 layers, hidden 128, vocab 512
    dtype="float32",
    dump=dict(prompts=4, n=4, prompt_len=(4, 12), response_len=(4, 20)),
    micro_batch_tokens=64,
    kernel_shapes={"H=64,V=512": (64, 512), "H=128,V=1000": (128, 1000)},
    kernel_tokens=64, kernel_dtype="fp32", kernel_repeats=1,
    slice_name="tiny Qwen2 2-layer slice",
    slice=QWEN2 | dict(vocab_size=512, hidden_size=128, intermediate_size=352, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True),
    train_tokens=(128, 256), doc_len=64, train_steps=2, train_warmup=1,
    timeout_s=600,
)


@dataclass
class Row:
    what: str
    result: str
    numbers: str
    passed: bool


class Log:
    """Subprocess output and tracebacks, appended to a file (or dropped without --out)."""

    def __init__(self, path: Path | None):
        self.path = path
        if path is not None:
            path.write_text("", encoding="utf-8")

    def write(self, title: str, text: str) -> None:
        if self.path is not None:
            with self.path.open("a", encoding="utf-8") as handle:
                handle.write(f"===== {title}\n{text}\n")


def add_arguments(parser):
    parser.add_argument("--out", type=Path, help="also write the table here (and the subprocess logs to .log)")
    parser.add_argument("--workdir", type=Path,
                        help="model, dump and run directories (default: a temporary directory, removed after)")


def stages():
    """(label, function) in the order they run: the short ones first, so that a run cut off by its
    time limit still has their rows (--out is rewritten after every stage)."""
    return (("(a) Triton kernel tests", kernel_tests), ("(c) LM-head kernels", kernel_rows),
            ("(d)/(e) train slice + offload", slice_rows), ("(b) OREAL run + resume", oreal_run))


def run(args):
    sizes = GPU if torch.cuda.is_available() else CPU
    log = Log(args.out.with_suffix(".log") if args.out else None)
    begin = time.perf_counter()
    rows, pending = [], [label for label, _ in stages()]
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as temporary:
        work = args.workdir or Path(temporary)
        work.mkdir(parents=True, exist_ok=True)
        for label, check in stages():
            print(f"gpu-check: {label} ({time.perf_counter() - begin:.0f} s)", file=sys.stderr, flush=True)
            try:
                rows += check(sizes, work, log)
            except Exception as err:  # one failed stage is a row; the others still run
                log.write(f"{label}: error", traceback.format_exc())
                rows.append(Row(label, "error", _last_line(err), False))
            if sizes.mode == "gpu":
                torch.cuda.empty_cache()  # for the next stage's processes
            pending.remove(label)
            if args.out:
                args.out.write_text(render(sizes, rows, pending, time.perf_counter() - begin) + "\n", encoding="utf-8")
    table = render(sizes, rows, pending, time.perf_counter() - begin)
    print(table)
    return 0 if all(row.passed for row in rows) else 1


def render(sizes: Sizes, rows: list[Row], pending: list[str], seconds: float) -> str:
    device = torch.device("cuda" if sizes.mode == "gpu" else "cpu")
    mode = ("gpu: full sizes (GPU in oreal_mega/bench/gpu_check.py)" if sizes.mode == "gpu" else
            "cpu: tiny sizes, a smoke test of this script (CI), not a benchmark")
    lines = ["# oreal-mega bench gpu-check", "",
             f"machine: {machine_description(device)}",
             f"date: {time.strftime('%Y-%m-%d %H:%M')}; mode {mode}; total {seconds:.0f} s", "",
             "| check | result | numbers | status |", "|---|---|---|---|"]
    lines += [f"| {r.what} | {r.result} | {r.numbers} | {'PASS' if r.passed else 'FAIL'} |"
              for r in sorted(rows, key=lambda r: r.what[:3])]  # by label; a stage's rows keep their order
    failed = sum(not r.passed for r in rows)
    lines += ["", f"{len(rows) - failed} PASS, {failed} FAIL" + (f"; not run yet: {', '.join(pending)}" if pending else "")]
    return "\n".join(lines)


def _last_line(err: BaseException) -> str:
    """The line of an error (a child's output, for a failed torchrun) that names the cause."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    causes = [line for line in lines if re.search(r"(Error|Exception|error): ", line) and "ChildFailedError" not in line]
    line = causes[-1] if causes else f"{type(err).__name__}: {lines[-1] if lines else ''}"
    return line[:300].replace("|", "/")


# -- (a) ------------------------------------------------------------------------------------------

def kernel_tests(sizes: Sizes, work: Path, log: Log) -> list[Row]:
    """tests/test_kernels_triton.py in a child pytest: compiled on CUDA, under TRITON_INTERPRET=1 on CPU."""
    tests = Path(oreal_mega.__file__).resolve().parents[1] / "tests"
    how = "compiled" if sizes.mode == "gpu" else "TRITON_INTERPRET=1"
    what = f"(a) tests/test_kernels_triton.py, {how}"
    if not (tests / "test_kernels_triton.py").is_file():
        return [Row(what, "not found", f"no {tests}/test_kernels_triton.py: run from a source checkout", False)]
    env = dict(os.environ)
    if sizes.mode == "cpu":
        env["TRITON_INTERPRET"] = "1"
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_kernels_triton.py"],
                          cwd=tests, env=env, capture_output=True, text=True, timeout=sizes.timeout_s)
    log.write(what, proc.stdout + proc.stderr)
    counts = {word: int(n) for n, word in re.findall(r"(\d+) (passed|failed|skipped|errors?)\b", proc.stdout)}
    summary = ", ".join(f"{n} {word}" for word, n in counts.items()) or f"pytest exit status {proc.returncode}"
    ok = proc.returncode == 0 and counts.get("passed", 0) > 0 and not counts.get("failed")
    return [Row(what, summary, f"{time.perf_counter() - start:.0f} s", ok)]


# -- (b) ------------------------------------------------------------------------------------------

def write_model(directory: Path, fields: dict, dtype: str) -> Path:
    """A randomly initialised (HF's own init, seed 0) Qwen2 with `fields` over the tiny config, saved as
    safetensors with the tiny tokenizer. Under replay the trainer needs the tokenizer only for its eos
    id and to encode the probe prompt, so its 512 ids may be fewer than the model's vocabulary."""
    import transformers

    from oreal_mega.testing.tiny import make_tiny_tokenizer, tiny_config

    make_tiny_tokenizer(directory)
    torch.manual_seed(0)
    model = transformers.Qwen2ForCausalLM(tiny_config("qwen2", **fields))
    model.to(getattr(torch, dtype)).save_pretrained(str(directory))
    return directory


def oreal_run(sizes: Sizes, work: Path, log: Log) -> list[Row]:
    from oreal_mega.rollout.synthetic_dump import write_synthetic_dump

    start = time.perf_counter()
    model = write_model(work / "model", sizes.policy, sizes.dtype)
    vocab = json.loads((model / "config.json").read_text())["vocab_size"]
    prompts = write_synthetic_dump(work / "dump", steps=3, vocab_size=vocab, seed=0, **sizes.dump)
    config = work / "oreal.yaml"
    config.write_text(yaml.safe_dump({
        "model": {"path": str(model), "dtype": sizes.dtype, "offload_reference": True, "offload_token_rm": True},
        "data": {"prompts": str(prompts), "prompts_per_step": sizes.dump["prompts"], "difficulty_balance": False},
        "rollout": {"engine": "replay", "replay_dir": str(work / "dump"), "n": sizes.dump["n"],
                    "max_tokens": sizes.dump["response_len"][1]},
        "objective": {"actor_freeze_steps": 1},  # the policy learns from step 1 on
        # a large LR and no warm-up, so that the steps after the checkpoint depend on what it restored
        "optim": {"lr": 1e-4, "warmup_steps": 0, "total_steps": 3},
        "rm_optim": {"lr": 1e-4, "warmup_steps": 0, "total_steps": 3},
        "train": {"steps": 3, "micro_batch_tokens": sizes.micro_batch_tokens, "keep_last": 1, "tensorboard": False,
                  "deterministic": True},  # so that a difference between the runs is not rounding noise
    }))
    setup_s = time.perf_counter() - start

    def train(out: Path, *overrides: str) -> str:
        from oreal_mega.testing.launch import torchrun

        output = torchrun("-m oreal_mega.testing.no_vllm train", 1, [config, f"train.out_dir={out}", *overrides],
                          timeout=sizes.timeout_s)
        log.write(f"(b) train {' '.join(overrides)} -> {out.name}", output)
        return output

    start = time.perf_counter()
    train(work / "full", "train.save_every=0")
    full_s = time.perf_counter() - start
    cut_output = train(work / "cut", "train.steps=1", "train.save_every=1")  # one checkpoint, after step 0
    resumed_output = train(work / "cut", "train.save_every=0")
    full, cut = _metrics(work / "full"), _metrics(work / "cut")  # cut: step 0 fresh, steps 1-2 resumed
    backend = "NCCL" if sizes.mode == "gpu" else "gloo"
    what = (f"(b) OREAL 3 steps, replay ({sizes.dump['prompts']} prompts × {sizes.dump['n']}), token-RM, "
            f"reference + token-RM offloaded, train.deterministic, torchrun {backend}, {sizes.policy_name} "
            f"{sizes.dtype}")
    ran = sorted(full) == [0, 1, 2] and all(_finite(full[2].get(k)) for k in COMPARED)
    last = full.get(2, {})
    rows = [Row(what, f"3 steps, step 2 loss {last.get('loss', float('nan')):.4g}",
                f"setup {setup_s:.0f} s, run {full_s:.0f} s; step 2: {last.get('step_seconds', float('nan')):.2f} s, "
                f"MFU {last.get('mfu', float('nan')):.1%}, {last.get('kept_samples')} kept samples, "
                f"pass rate {last.get('pass_rate', float('nan')):.3f}", ran)]
    # Step 0 ran fresh in both runs, in two processes: a difference there is nondeterminism, not the resume
    deterministic, detail = _compare(cut, full, steps=(0,))
    warned = sorted(set(re.findall(r"(\w+) does not have a deterministic implementation",
                                   cut_output + resumed_output)))
    if warned:
        detail += f"; ops without a deterministic implementation (warned): {', '.join(warned)}"
    rows.append(Row("(b) step 0 (reference and token-RM passes) of the two fresh runs: metrics equal (determinism)",
                    "yes" if deterministic else "no: not deterministic on this machine", detail, deterministic))
    equal, detail = _compare(cut, full, steps=(1, 2))
    resumed_at_1 = "at step 1" in resumed_output
    if not resumed_at_1:
        result, detail = "no", "the restart did not resume at step 1; " + detail
    elif not equal and not deterministic:
        result = "undecided: step 0 differs already (determinism row)"
    else:
        result = "yes" if equal else "no"
    rows.append(Row("(b) stopped after step 0's checkpoint, resumed for steps 1-2: metrics == uninterrupted run",
                    result, detail, equal and resumed_at_1))
    return rows


def _metrics(run_dir: Path) -> dict[int, dict]:
    """Last record per step of a run's metrics.jsonl."""
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r for r in records}


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def _compare(cut: dict[int, dict], full: dict[int, dict], steps: tuple[int, ...]) -> tuple[bool, str]:
    """Whether every COMPARED metric that either run logged at `steps` is equal in both, and the details.
    (A step whose policy is frozen logs no policy metrics.)"""
    if any(step not in cut or step not in full for step in steps):
        return False, f"steps logged: cut run {sorted(cut)}, uninterrupted run {sorted(full)}"
    pairs = [(step, key, cut[step].get(key), full[step].get(key)) for step in steps for key in COMPARED
             if key in cut[step] or key in full[step]]
    unequal = [(step, key, a, b) for step, key, a, b in pairs if a != b]
    span = f"step {steps[0]}" if len(steps) == 1 else f"steps {steps[0]}-{steps[-1]}"
    if not pairs:
        return False, f"no metric to compare at {span}"
    if not unequal:
        logged = {key for _, key, _, _ in pairs}
        return True, f"{len(pairs)} values ({span}: {', '.join(k for k in COMPARED if k in logged)}) bit-equal"
    step, key, a, b = max(unequal, key=lambda u: _relative(u[2], u[3]))
    return False, (f"{len(unequal)} of {len(pairs)} values differ; largest: step {step} {key} {a!r} vs {b!r} "
                   f"(relative {_relative(a, b):.1e})")


def _relative(a, b) -> float:
    if not (_finite(a) and _finite(b)):
        return math.inf
    return abs(a - b) / max(abs(b), 1e-30)


# -- (c) ------------------------------------------------------------------------------------------

def kernel_rows(sizes: Sizes, work: Path, log: Log) -> list[Row]:
    from oreal_mega.models.flops import measured_matmul_flops

    device = torch.device("cuda" if sizes.mode == "gpu" else "cpu")
    dtype = kernel_bench.DTYPES[sizes.kernel_dtype]
    flops = measured_matmul_flops(device, dtype)
    impls = kernel_bench.implementations(None)
    tolerance = GRAD_TOLERANCE[sizes.kernel_dtype]
    rows = []
    for name, (hidden, vocab) in sizes.kernel_shapes.items():
        floor = kernel_bench.floor_ms(sizes.kernel_tokens, hidden, vocab, flops)
        for label, impl in (("naive", "naive PyTorch (fp32 logits)"), ("ours", "ours fused_oreal_loss, dW into main_grad")):
            ms, extra, errors = kernel_bench.measure(impls[impl], sizes.kernel_tokens, hidden, vocab, dtype, device,
                                                     sizes.kernel_repeats)
            numbers = (f"{extra:+.2f} GiB extra; rel err logp/grad_h/grad_W {'/'.join(f'{e:.1e}' for e in errors)}; "
                       f"floor {floor:.3g} ms at {flops / 1e12:.3g} TFLOP/s")
            ok = all(map(_finite, (ms, extra, *errors))) and (label == "naive" or max(errors) <= tolerance)
            rows.append(Row(f"(c) LM-head loss fwd+bwd, {name}, T={sizes.kernel_tokens}, {sizes.kernel_dtype}: {label}",
                            f"{ms:.1f} ms, {ms / floor:.2f}× floor", numbers, ok))
    return rows


# -- (d), (e) -------------------------------------------------------------------------------------

def slice_rows(sizes: Sizes, work: Path, log: Log) -> list[Row]:
    from oreal_mega.distributed import ParallelConfig, init_distributed, shutdown
    from oreal_mega.models.builder import build_model
    from oreal_mega.models.ddp import wrap_ddp
    from oreal_mega.models.hf_config import parse_arch

    arch = parse_arch(sizes.slice, where="gpu_check slice")
    topo = init_distributed(ParallelConfig(), arch.num_layers)
    try:
        chunks = wrap_ddp(build_model(arch, dtype=sizes.dtype))
        rows = [_train_row(chunks, arch, tokens, sizes, topo) for tokens in sizes.train_tokens]
        rows.append(_offload_row(chunks, sizes.slice_name, topo.device))
    finally:
        shutdown()
    return rows


def _train_row(chunks, arch, tokens: int, sizes: Sizes, topo) -> Row:
    cuda = topo.device.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    result = train_bench.measure(chunks, arch, tokens, sizes.doc_len, topo, sizes.dtype, sizes.train_steps,
                                 sizes.train_warmup)
    peak = f", peak {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB" if cuda else ""
    return Row(f"(d) megatron fwd+bwd, {sizes.slice_name}, {tokens} packed tokens ({result.docs} docs), {sizes.dtype}",
               f"MFU {result.mfu:.1%}",
               f"{result.seconds * 1e3:.1f} ms/step (median of {result.steps}), {result.tokens_per_s:,.0f} tokens/s"
               f"{peak}; MFU of {result.peak / 1e12:.3g} TFLOP/s ({result.peak_name})",
               _finite(result.mfu) and result.mfu > 0)


def _offload_row(chunks, name: str, device: torch.device, rounds: int = 3) -> Row:
    """Park the slice (weights copied to host, DDP gradient buffers freed) and load it back, `rounds`
    times; medians, with the device synchronised around each call; the weights must come back bit-equal."""
    from oreal_mega.models.flops import sync
    from oreal_mega.models.offload import Parked

    params = [p for chunk in chunks for p in chunk.parameters()]
    before = [p.detach().clone() for p in params]
    parked = Parked(chunks)
    freed, park, unpark = parked.device_bytes, [], []
    for _ in range(rounds):
        sync(device)
        start = time.perf_counter()
        parked.offload()
        sync(device)
        park.append(time.perf_counter() - start)
        copied, left = parked.host_bytes, parked.device_bytes
        start = time.perf_counter()
        parked.load()
        sync(device)
        unpark.append(time.perf_counter() - start)
    exact = all(torch.equal(p, b) for p, b in zip(params, before))
    park_s, unpark_s = sorted(park)[rounds // 2], sorted(unpark)[rounds // 2]
    return Row(f"(e) park / unpark the {name} (Parked.offload / .load)",
               f"park {park_s:.3g} s, unpark {unpark_s:.3g} s",
               f"{copied / 1e9:.3g} GB copied each way ({copied / 1e9 / park_s:.3g} / {copied / 1e9 / unpark_s:.3g} GB/s), "
               f"{freed / 1e9:.3g} GB of device memory freed (weights + gradient buffers), median of {rounds}; "
               f"round trip {'bit-exact' if exact else 'NOT exact'}",
               exact and left == 0 and copied > 0)
