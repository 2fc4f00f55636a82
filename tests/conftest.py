import pytest


@pytest.fixture
def megatron_world():
    """A one-process gloo world with megatron's parallel groups (TP = PP = 1). Made again when an
    in-process vLLM engine's shutdown (another test) has torn down the default process group."""
    import torch.distributed as dist
    from megatron.core import parallel_state

    from oreal_mega.distributed import ParallelConfig, init_distributed

    if not dist.is_initialized() and parallel_state.model_parallel_is_initialized():
        parallel_state.destroy_model_parallel()
    return init_distributed(ParallelConfig(seed=11))
