import pytest


@pytest.fixture(scope="session")
def megatron_world():
    """A one-process gloo world with megatron's parallel groups (TP = PP = 1), shared by tests."""
    from oreal_mega.distributed import ParallelConfig, init_distributed

    return init_distributed(ParallelConfig(seed=11))
