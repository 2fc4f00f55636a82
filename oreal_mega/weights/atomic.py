"""Write a directory atomically, from one or several ranks: everything goes into a temporary
sibling, which replaces the destination only once complete. An interrupted run leaves the
destination as it was (plus a `.NAME.partial` sibling that the next run removes)."""
import shutil
from contextlib import contextmanager
from pathlib import Path

import torch.distributed as dist

from oreal_mega.errors import UserError


def _barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def _is_main() -> bool:
    return not dist.is_initialized() or dist.get_rank() == 0


def check_destination(dest: str | Path, overwrite: bool) -> None:
    dest = Path(dest)
    if dest.exists() and not overwrite:
        raise UserError(f"{dest} already exists (pass --overwrite to replace it)")


@contextmanager
def atomic_directory(dest: str | Path, overwrite: bool = False):
    """Collective over all ranks: yields the temporary directory to fill; rank 0 creates it and,
    after every rank left the block, moves it into place."""
    dest = Path(dest)
    check_destination(dest, overwrite)  # on every rank, so all of them fail alike
    partial = dest.parent / f".{dest.name}.partial"
    if _is_main():
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
    _barrier()
    try:
        yield partial
    except BaseException:
        if _is_main():
            shutil.rmtree(partial, ignore_errors=True)
        raise
    _barrier()
    if _is_main():
        old = dest.parent / f".{dest.name}.old"
        if dest.exists():
            shutil.rmtree(old, ignore_errors=True)
            dest.rename(old)
        partial.rename(dest)
        shutil.rmtree(old, ignore_errors=True)
    _barrier()
