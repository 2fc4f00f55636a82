"""What a benchmark ran on, printed by every `oreal-mega bench` target: the command, the date and the
machine (accelerator or CPU model, usable cores, torch and Python versions)."""
import datetime
import os
import platform
import shlex
import sys

import torch


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            return next(line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine() or "unknown CPU"


def machine_description(device: torch.device | None = None) -> str:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    host = f"CPU {cpu_model()}, {cores} usable cores"
    if device is not None and device.type == "cuda":
        host = f"{torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda}); host {host}"
    return f"{host}; torch {torch.__version__}, Python {platform.python_version()}"


def print_header(device: torch.device | None = None) -> None:
    """The three lines every benchmark starts with."""
    print(f"machine: {machine_description(device)}")
    print(f"date: {datetime.date.today().isoformat()}")
    print(f"command: {shlex.join(['oreal-mega', *sys.argv[1:]])}")
