"""torchrun worker: the bring-up of every job, then a long wait (stands for a long training run)."""
import os
import time

from oreal_mega.distributed import ParallelConfig, init_distributed

if __name__ == "__main__":
    init_distributed(ParallelConfig())
    os.write(1, f"worker {os.getpid()} up\n".encode())  # one write: the two workers share the pipe
    time.sleep(300)
