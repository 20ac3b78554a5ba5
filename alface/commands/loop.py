"""`alface loop`: run or resume the active-learning loops until people are needed."""

from __future__ import annotations

import argparse

from alface.commands.common import add_overrides, add_workdir, devices_of, open_workdir

HELP = "run or resume the active-learning loops until people are needed"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_workdir(parser)
    parser.add_argument(
        "--oracle", metavar="LABELS.csv",
        help="answer every labeling request from known labels (CSV path,label or item,label): "
        "the simulated mode of benchmarks and the demo; runs until the loop needs a new pool",
    )  # fmt: skip
    add_overrides(parser)
    parser.epilog = (
        "Each round draws an overfitting set from the labeled faces; each iteration draws an "
        "iteration-validation set from the pool, selects a batch, waits for both to be labeled, "
        "retrains and checks: the overfitting-set metric kept (loop.overfit_tolerance) and the "
        "itval metric improved (loop.improve_threshold). When it needs people it writes the "
        "batches under WORKDIR/batches/, says what to do and exits 0; run it again after "
        "`alface import-labels`. Reports: WORKDIR/reports/rR-iI/report.{json,png}. A killed "
        "run resumes where it stopped."
    )


def run(args: argparse.Namespace) -> int:
    from alface.config_rules import check_names
    from alface.launch import check
    from alface.loop import Loop
    from alface.oracle import Oracle
    from alface.progress import progress_bar

    with open_workdir(args) as wd:
        check_names(wd.cfg)
        devices = devices_of(wd)
        check(devices)  # under DDP: training and scoring can be launched (alface.launch)
        oracle = Oracle.from_csv(args.oracle, wd.cfg.labels.classes) if args.oracle else None
        with progress_bar("loop") as advance:
            loop = Loop(wd, devices, oracle, advance, on_step=_show(advance))
            result = loop.run()
        _summary(wd)
    for line in result.lines:
        print(line)
    return 0


def _show(advance):  # noqa: ANN001, ANN202
    def on_step(step: str, phase: str) -> None:
        if phase == "start":
            advance(0, status=step)

    return on_step


def _summary(wd) -> None:  # noqa: ANN001
    """One line per finished iteration: labels, metrics, decision."""
    for r_idx, r in enumerate(wd.store.runs.rounds(), 1):
        for it in wd.store.runs.iterations(r.id):
            if not it.metrics:
                continue
            rec = it.metrics
            c = rec["checks"]
            print(
                f"round {r_idx} iteration {it.idx + 1}: {rec['labels_used']} labels, "
                f"overfit {_f(c['overfit'])} (start {_f(c['overfit_baseline'])}), "
                f"itval {_f(c['itval_before'])} -> {_f(c['itval'])} ({c['metric']}): "
                f"{rec['decision']}" + (f" ({rec['stop_reason']})" if rec["stop_reason"] else "")
            )


def _f(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"
