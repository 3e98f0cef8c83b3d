"""``make demo``'s report: what a newcomer reads after the reference pipeline ran."""

from __future__ import annotations

from airflow_mlpipe.demo import report
from airflow_mlpipe.sweeps import SweepOutcome, VariantOutcome


def _record() -> dict:
    sweep = SweepOutcome(
        metric="val_recall@10",
        mode="max",
        selected=1,
        variants=[
            VariantOutcome(
                label="factors=64",
                variant={"factors": 64},
                config={"factors": 64},
                metrics={"val_recall@10": 0.21},
                state="success",
            ),
            VariantOutcome(
                label="factors=128",
                variant={"factors": 128},
                config={"factors": 128},
                metrics={"val_recall@10": 0.23},
                state="success",
            ),
            VariantOutcome(
                label="factors=256",
                variant={"factors": 256},
                config={"factors": 256},
                metrics={},
                state="failed",
                error="MemoryError",
            ),
        ],
    )
    return {"outputs": {}, "sweeps": {"train": sweep.model_dump(mode="json")}}


def test_the_report_lists_each_variant_with_its_metric_and_marks_the_winner(capsys) -> None:
    report(_record())

    out = capsys.readouterr().out
    assert "--- Sweep of train: max val_recall@10 wins ---" in out
    lines = {line.split()[0]: line for line in out.splitlines() if line.startswith("factors=")}
    assert "0.2100" in lines["factors=64"] and "selected" not in lines["factors=64"]
    assert "0.2300" in lines["factors=128"] and lines["factors=128"].endswith("success  <- selected")
    assert lines["factors=256"].split()[1:] == ["-", "failed"]
