"""`python -m oreal_mega.testing.faults [--nan-grads-at STEP,STEP...] CONFIG [key=value ...]`: `oreal-mega
train` with faults injected from outside the trainer, for tests (run it under torchrun like `train`).

--nan-grads-at: at those steps the policy's gradients are overwritten with NaN right before the
non-finite guard looks at them, so the guard's skip / stop logic is exercised on a real run."""
import argparse

from oreal_mega.trainer.guards import StepGuard


def nan_gradients_at(steps: set[int]) -> None:
    """Make the policy's gradients NaN at `steps` (every rank) before StepGuard.finite checks them."""
    check = StepGuard.finite

    def finite(self, outputs, chunks, step, what):
        if what == "policy" and step in steps:
            for chunk in chunks:
                for buffer in chunk.buffers:
                    buffer.grad_data.fill_(float("nan"))
        return check(self, outputs, chunks, step, what)

    StepGuard.finite = finite


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m oreal_mega.testing.faults")
    parser.add_argument("--nan-grads-at", type=lambda text: [int(v) for v in text.split(",")], default=[],
                        metavar="STEP,STEP...")
    parser.add_argument("train_args", nargs=argparse.REMAINDER, help="CONFIG [key=value ...] as for train")
    args = parser.parse_args(argv)
    nan_gradients_at(set(args.nan_grads_at))
    from oreal_mega.cli import main as cli_main

    cli_main(["train", *args.train_args])


if __name__ == "__main__":
    main()
