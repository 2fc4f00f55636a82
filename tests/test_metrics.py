"""MetricsLog keeps one record per step when a run resumes over an earlier run's logs."""
import json

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from oreal_mega.trainer.metrics import MetricsLog


def _log(run_dir, steps, start_step=None, offset=0.0):
    log = MetricsLog(run_dir, total_steps=6, tensorboard=True, wandb_project=None, config={}, enabled=True,
                     start_step=start_step)
    for step in steps:
        log.log(step, {"loss": step + offset})
    log.close()


def _jsonl(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _tensorboard(run_dir):
    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    return [(e.step, e.value) for e in events.Scalars("loss")]


def test_resume_drops_the_earlier_runs_records_from_the_resume_step(tmp_path):
    _log(tmp_path, range(5))  # killed after logging step 4; its last checkpoint was step 2
    with (tmp_path / "metrics.jsonl").open("a") as handle:
        handle.write('{"step": 5, "lo')  # a line cut short by the kill
    _log(tmp_path, range(3, 6), start_step=3, offset=0.5)
    assert [(r["step"], r["loss"]) for r in _jsonl(tmp_path)] == [(0, 0), (1, 1), (2, 2), (3, 3.5), (4, 4.5),
                                                                  (5, 5.5)]
    assert _tensorboard(tmp_path) == [(0, 0), (1, 1), (2, 2), (3, 3.5), (4, 4.5), (5, 5.5)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.jsonl", "tensorboard"]  # no temporary


def test_a_run_from_step_0_replaces_the_logs_and_no_start_step_appends(tmp_path):
    _log(tmp_path, range(2))
    _log(tmp_path, range(2), start_step=0, offset=0.5)
    assert [(r["step"], r["loss"]) for r in _jsonl(tmp_path)] == [(0, 0.5), (1, 1.5)]
    _log(tmp_path, [2])
    assert [r["step"] for r in _jsonl(tmp_path)] == [0, 1, 2]
