"""Park a model (and its optimizer state) in host memory between uses, freeing accelerator memory.

Works on storages, not modules: every distinct storage behind the parameters, the DDP gradient
buffers and the optimizer's tensors is copied once into a (pinned, on CUDA) host buffer and then
resized to zero bytes. Tensor objects and views — `param.main_grad`, the distributed optimizer's
parameter buffer, tied weights — stay valid and see their data again after `load()`. Gradient
buffers are not copied, only freed: they are zeroed before each use anyway. The host buffers are
allocated once and kept while the model is on the device, for the next offload: pinned allocation
is slow and fragments host memory; only a storage that is new (optimizer state, at its first step)
or changed size gets a new one.

    parked = Parked(reference_chunks)
    parked.offload()          # after the reference pass
    with parked.loaded():     # before the next one
        ...
"""
from contextlib import contextmanager

import torch


def _unique_storages(tensors) -> list[torch.Tensor]:
    """One tensor per distinct storage, each spanning the whole storage."""
    seen, out = set(), []
    for tensor in tensors:
        if tensor is None or tensor.numel() == 0:
            continue
        storage = tensor.untyped_storage()
        if storage.data_ptr() in seen or storage.nbytes() == 0:
            continue
        seen.add(storage.data_ptr())
        out.append(torch.empty(0, dtype=torch.uint8, device=tensor.device).set_(storage))
    return out


def _optimizer_tensors(optimizer) -> list[torch.Tensor]:
    """The tensors a megatron optimizer (chained or not) or a torch optimizer owns: fp32 master
    parameters and per-parameter state (Adam moments)."""
    tensors = []
    for opt in getattr(optimizer, "chained_optimizers", [optimizer]):
        inner = getattr(opt, "optimizer", opt)
        if inner is None:
            continue
        for group in inner.param_groups:
            tensors += list(group["params"])
        for state in inner.state.values():
            tensors += [v for v in state.values() if torch.is_tensor(v) and v.dim() > 0]
    return tensors


def _grad_buffers(chunks) -> list[torch.Tensor]:
    """megatron DDP's contiguous gradient buffers (plain modules have none)."""
    from megatron.core.distributed import DistributedDataParallel

    return [buffer.grad_data for chunk in chunks if isinstance(chunk, DistributedDataParallel)
            for buffer in chunk.buffers + chunk.expert_parallel_buffers]


class Parked:
    """Host-memory parking of `chunks` (plain or DDP-wrapped) and optionally their `optimizer`.
    The storages are collected at each `offload()`: optimizer state appears only at its first step."""

    def __init__(self, chunks: list[torch.nn.Module], optimizer=None):
        self.chunks, self.optimizer = chunks, optimizer
        self._kept, self._grads = self._storages()
        self._grad_sizes: list[int] = []
        self._host: list[torch.Tensor] = []  # one per storage in `_kept` at the last offload
        self.offloaded = False

    def _storages(self) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """(storages to copy out, gradient-buffer storages to free), no storage twice."""
        grads = _unique_storages(_grad_buffers(self.chunks))
        grad_ptrs = {g.untyped_storage().data_ptr() for g in grads}
        kept = [p for chunk in self.chunks for p in chunk.parameters()]
        kept += _optimizer_tensors(self.optimizer) if self.optimizer is not None else []
        return [s for s in _unique_storages(kept) if s.untyped_storage().data_ptr() not in grad_ptrs], grads

    @property
    def device_bytes(self) -> int:
        """Bytes these storages occupy on their device now (0 while offloaded)."""
        kept, grads = (self._kept, self._grads) if self.offloaded else self._storages()
        return sum(s.untyped_storage().nbytes() for s in kept + grads)

    @property
    def host_bytes(self) -> int:
        """Bytes the last `offload()` copied to host memory (0 while on the device)."""
        return sum(host.numel() for host in self._host) if self.offloaded else 0

    def offload(self) -> None:
        if self.offloaded:
            return
        self._kept, self._grads = self._storages()
        pin = torch.cuda.is_available()
        self._host = self._host_buffers([storage.untyped_storage().nbytes() for storage in self._kept], pin)
        for storage, host in zip(self._kept, self._host):
            host.copy_(storage, non_blocking=pin)
        if pin:
            torch.cuda.synchronize()  # the copies must land before the device memory goes
        self._grad_sizes = [g.untyped_storage().nbytes() for g in self._grads]
        for storage in self._kept + self._grads:
            storage.untyped_storage().resize_(0)
        self.offloaded = True
        if pin:
            torch.cuda.empty_cache()

    def _host_buffers(self, sizes: list[int], pin: bool) -> list[torch.Tensor]:
        """A host buffer of each size: the last offload's where one of that size is left (taken in
        order, so that unchanged storages get their own back), a new one otherwise; the rest dropped."""
        free: dict[int, list[torch.Tensor]] = {}
        for host in self._host:
            free.setdefault(host.numel(), []).append(host)
        return [free[size].pop(0) if free.get(size) else torch.empty(size, dtype=torch.uint8, pin_memory=pin)
                for size in sizes]

    def load(self) -> None:
        if not self.offloaded:
            return
        for storage, host in zip(self._kept, self._host):
            storage.untyped_storage().resize_(host.numel())
            storage.set_(storage.untyped_storage()).copy_(host, non_blocking=True)
        for storage, size in zip(self._grads, self._grad_sizes):
            storage.untyped_storage().resize_(size)
            storage.set_(storage.untyped_storage()).zero_()
        if torch.cuda.is_available():
            torch.cuda.synchronize()  # the weights are complete on return, whatever stream reads them
        self.offloaded = False

    @contextmanager
    def loaded(self):
        """On the device inside the block, parked again afterwards."""
        self.load()
        try:
            yield
        finally:
            self.offload()
