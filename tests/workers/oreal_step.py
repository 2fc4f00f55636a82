"""torchrun worker: one OREAL update (reference pass, token-RM step, policy step) on fixed
trajectories in a given layout and micro-batch size, per tiny model; saves full gradients of policy
and RM. `--kept-first` adds updates on only the first few trajectories: a step that keeps fewer of
them than there are data-parallel ranks leaves a rank with no sequence (an all-padding micro-batch)."""
import argparse
from pathlib import Path

import torch
import torch.distributed as dist
from megatron.core import parallel_state as ps

from oreal_mega.distributed import ParallelConfig, init_distributed, shutdown
from oreal_mega.models.builder import build_model
from oreal_mega.models.ddp import finalize_grads, wrap_ddp
from oreal_mega.models.hf_config import parse_arch
from oreal_mega.objective import ObjectiveConfig, global_counts
from oreal_mega.packing import plan_dp_microbatches
from oreal_mega.testing.layouts import TINY_CONFIGS, gather_full_grads, load_full_state
from oreal_mega.trainer.batch import Trajectory, micro_batches
from oreal_mega.trainer.passes import actor_step, sequence_logprobs, token_rm_step
from oreal_mega.trainer.token_rm import to_token_rm


def trajectories(vocab: int) -> list[Trajectory]:
    gen = torch.Generator().manual_seed(5)
    out = []
    for i in range(7):
        prompt = torch.randint(3, vocab, (int(torch.randint(3, 8, (1,), generator=gen)),), generator=gen)
        response = torch.randint(3, vocab, (int(torch.randint(2, 9, (1,), generator=gen)),), generator=gen)
        out.append(Trajectory(prompt.tolist(), response.tolist(), is_positive=i % 2 == 0,
                              advantage=float(torch.randn(1, generator=gen)), pass_rate=0.25 + 0.1 * i))
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--archs", nargs="+", default=["qwen2"], help="tiny configs, updated one after the other")
    p.add_argument("--tp", type=int, default=1)
    p.add_argument("--pp", type=int, default=1)
    p.add_argument("--max-tokens", type=int, nargs="+", required=True,
                   help="micro-batch token budgets; one update (from the same weights) per budget")
    p.add_argument("--kept-first", nargs="*", default=[], metavar="K:BUDGET",
                   help="more updates (after those of --max-tokens), each on the first K trajectories only, "
                        "in micro-batches of <= BUDGET tokens")
    p.add_argument("--overlap-grad-reduce", action="store_true",
                   help="overlap the DP gradient reduction with the backward (off on gloo by default), "
                        "in buckets small enough that the tiny models have several")
    p.add_argument("--states", type=Path, help="directory of the full states to load (omit to create them)")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    updates = [(f"{budget}", None, budget) for budget in args.max_tokens]  # (file label, kept, budget)
    for kept, budget in (map(int, spec.split(":")) for spec in args.kept_first):
        updates.append((f"first{kept}_{budget}", kept, budget))
    num_layers = parse_arch(TINY_CONFIGS[args.archs[0]]).num_layers
    init_distributed(ParallelConfig(tp=args.tp, pp=args.pp, seed=3), num_layers)
    for name in args.archs:
        arch = parse_arch(TINY_CONFIGS[name])
        policy, reference, rm = build_models(arch, (args.states or args.out) / f"states_{name}.pt",
                                             create=args.states is None)
        policy, rm = (wrap_ddp(chunks, overlap_grad_reduce=args.overlap_grad_reduce,
                               bucket_size=20_000 if args.overlap_grad_reduce else None) for chunks in (policy, rm))
        for label, kept, budget in updates:
            grads = oreal_update(arch, policy, reference, rm, budget, kept)
            if ps.get_tensor_model_parallel_rank() == 0 and ps.get_data_parallel_rank() == 0:
                torch.save(grads, args.out / f"grads_{name}_{label}_pp{ps.get_pipeline_model_parallel_rank()}.pt")
    dist.barrier()
    shutdown()


def build_models(arch, states_file: Path, create: bool):
    """Policy, reference and token-RM chunks (not DDP-wrapped) with the full states of `states_file`;
    `create`: the first (single-process) run draws three different models and saves them there."""
    policy, reference, rm = build_model(arch), build_model(arch), build_model(arch)
    if create:
        if dist.get_rank() == 0:
            states = {name: {n: p.detach().clone() for n, p in chunks[0].named_parameters()}
                      for name, chunks in (("policy", policy), ("reference", reference), ("rm", rm))}
            states["value_head"] = torch.randn(1, arch.hidden_size) * 0.5
            torch.save(states, states_file)
        dist.barrier()
    states = torch.load(states_file)
    for name, chunks in (("policy", policy), ("reference", reference), ("rm", rm)):
        load_full_state(chunks, states[name], arch.tie_word_embeddings)
    to_token_rm(rm, reference_feature=True)  # the paper's w·h_t plus the reference feature's a·f_t
    for chunk in rm:
        if chunk.post_process:
            chunk.value_head.weight.data.copy_(states["value_head"])
            chunk.value_head.reference_weight.data.fill_(0.7)
    return policy, reference, rm


def oreal_update(arch, policy, reference, rm, budget, kept=None):
    """Gradients of one OREAL update of policy and RM with micro-batches of ≤ budget tokens, on the
    first `kept` trajectories (all when None)."""
    for chunk in policy + rm:
        chunk.zero_grad_buffer()
    trajs = trajectories(arch.vocab_size)[:kept]
    dp, dp_rank = ps.get_data_parallel_world_size(), ps.get_data_parallel_rank()
    plan = plan_dp_microbatches([t.length for t in trajs], dp, budget)
    length = max(sum(trajs[i].length for i in mb) for rank in plan for mb in rank)
    mbs = micro_batches(trajs, plan[dp_rank], length)
    mine = [trajs[i] for mb in plan[dp_rank] for i in mb]
    counts = global_counts(torch.tensor([len(t.response_ids) for t in mine], dtype=torch.long),
                           torch.tensor([t.is_positive for t in mine]), ps.get_data_parallel_group())
    cfg = ObjectiveConfig(trm_input="hidden+reference_logprob")
    tp_group = ps.get_tensor_model_parallel_group()

    ref_logps = sequence_logprobs(reference, mbs, tp_group)
    rm_metrics = token_rm_step(rm, mbs, ref_logps, counts, cfg)
    weights = [m["weights"] for m in rm_metrics]
    actor_step(policy, mbs, ref_logps, weights, counts, cfg, tp_group)
    finalize_grads(policy)
    finalize_grads(rm)
    return {"policy": gather_full_grads(policy, arch.vocab_size), "rm": gather_full_grads(rm, arch.vocab_size)}


if __name__ == "__main__":
    main()
