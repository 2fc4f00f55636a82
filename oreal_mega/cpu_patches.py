"""Make megatron-core 0.16.1 run on CPU with gloo.

megatron-core hard-codes CUDA in a handful of call sites. Each patch below redirects one of them
and says why. `apply()` is a no-op when CUDA is available, so GPU runs use megatron untouched.
"""
import functools
import importlib
import sys
import types

import torch

# Modules that create tensors with device="cuda" (step counters, grad-norm buffers, bucket buffers).
_CUDA_FACTORY_MODULES = (
    "megatron.core.pipeline_parallel.schedules",
    "megatron.core.optimizer.optimizer",
    "megatron.core.optimizer.clip_grads",
    "megatron.core.optimizer.distrib_optimizer",
    "megatron.core.distributed.param_and_grad_buffer",
    "megatron.core.utils",
)
# Modules that test `tensor.type()` against CUDA type names to pick the fp32 path.
_CUDA_TYPE_CHECK_MODULES = (
    "megatron.core.optimizer.optimizer",
    "megatron.core.optimizer.clip_grads",
    "megatron.core.optimizer.distrib_optimizer",
)
_FACTORIES = ("zeros", "ones", "empty", "full", "tensor", "arange", "zeros_like", "ones_like",
              "empty_like", "full_like", "randn", "rand")

_applied = False


def _cpu_device(device):
    if device is None:
        return None
    if isinstance(device, int) or str(device).startswith("cuda"):
        return "cpu"
    return device


def _cpu_factory(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        if "device" in kwargs:
            kwargs["device"] = _cpu_device(kwargs["device"])
        return fn(*args, **kwargs)

    return wrapper


class _TorchOnCpu(types.ModuleType):
    """Stands in for `torch` inside one megatron module: tensor factories ignore device='cuda'."""

    def __init__(self):
        super().__init__("torch")
        for name in _FACTORIES:
            setattr(self, name, _cpu_factory(getattr(torch, name)))

    def __getattr__(self, name):
        return getattr(torch, name)


_CUDA_TYPE_NAMES = {
    "torch.FloatTensor": "torch.cuda.FloatTensor",
    "torch.HalfTensor": "torch.cuda.HalfTensor",
    "torch.BFloat16Tensor": "torch.cuda.BFloat16Tensor",
}


def apply() -> None:
    """Apply all CPU patches once; does nothing on a machine with CUDA."""
    global _applied
    if _applied or torch.cuda.is_available():
        return
    _applied = True
    from megatron.core.tensor_parallel import random as mrandom

    # Rotary buffers, p2p shape buffers and others use torch.cuda.current_device() as a device.
    torch.cuda.current_device = lambda: "cpu"
    # PP p2p and dist-checkpoint save synchronise the CUDA stream; nothing to wait for on CPU.
    torch.cuda.synchronize = lambda *args, **kwargs: None
    # The model-parallel RNG tracker forks the CUDA generator even with dropout 0: use the CPU one.
    torch.cuda.manual_seed = torch.manual_seed
    torch.cuda.get_rng_state = lambda *args, **kwargs: torch.get_rng_state()
    torch.cuda.set_rng_state = lambda state, *args, **kwargs: torch.set_rng_state(state)
    mrandom._get_cuda_rng_state = lambda *args, **kwargs: torch.get_rng_state()
    mrandom._set_cuda_rng_state = lambda state, *args, **kwargs: torch.set_rng_state(state)
    # Tied embeddings under PP move the shared weight with .cuda(); keep it where it is.
    torch.Tensor.cuda = lambda self, *args, **kwargs: self
    # Schedules, optimizer and DDP buffers are created with device="cuda".
    cpu_torch = _TorchOnCpu()
    for name in _CUDA_FACTORY_MODULES:
        importlib.import_module(name).torch = cpu_torch
    # The optimizer selects its fp32 path by comparing tensor.type() with CUDA type names.
    _answer_cuda_type_names_to_megatron_optimizer()


def _answer_cuda_type_names_to_megatron_optimizer():
    """`param.type()` is a tensor method, so module-level redirection cannot reach it: answer CUDA
    type names only when called from megatron's optimizer modules (identified by the caller frame)."""
    original = torch.Tensor.type
    callers = {importlib.import_module(n).__file__ for n in _CUDA_TYPE_CHECK_MODULES}

    def type_(self, dtype=None, non_blocking=False, **kwargs):
        if dtype is None and sys._getframe(1).f_code.co_filename in callers:
            name = original(self)
            return _CUDA_TYPE_NAMES.get(name, name)
        if dtype is None:
            return original(self)
        return original(self, dtype, non_blocking, **kwargs)

    torch.Tensor.type = type_
