"""Progress where stderr is no terminal: a line now and then, never a bar's escape codes."""

from alface.progress import _PlainProgress, progress_bar


def test_plain_progress_says_count_total_and_status_once_the_interval_has_passed(capsys):
    p = _PlainProgress("benchmark", 10, "", every=0.0)
    p.advance(3, "seed 0")
    p.advance(2)
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("benchmark: 3/10, ") and err[0].endswith("seed 0")
    assert err[1].startswith("benchmark: 5/10, ") and err[1].endswith("seed 0")


def test_plain_progress_is_quiet_within_the_interval(capsys):
    p = _PlainProgress("preprocess", None, "", every=3600.0)
    for _ in range(100):
        p.advance(1, "file")
    assert capsys.readouterr().err == ""


def test_a_short_command_off_a_terminal_prints_nothing(capsys):
    with progress_bar("preprocess", total=5) as advance:
        for _ in range(5):
            advance(1, status="x")
    assert capsys.readouterr().err == ""
