"""The publish command's progress bar in processor.progress."""

from processor.progress import count_lines, publish_progress


def test_count_lines_skips_blank(tmp_path):
    first = tmp_path / "first.jsonl"
    second = tmp_path / "second.jsonl"
    first.write_text('{"a": 1}\n\n{"b": 2}\n')
    second.write_text('{"c": 3}\n   \n')

    assert count_lines([str(first), str(second)]) == 3


def test_count_lines_stdin_unknown(tmp_path):
    stream = tmp_path / "stream.jsonl"
    stream.write_text("{}\n")

    assert count_lines([str(stream), "-"]) is None


def test_count_lines_missing_file_unknown(tmp_path):
    assert count_lines([str(tmp_path / "missing.jsonl")]) is None


def test_progress_off():
    assert publish_progress(["-"], enabled=False) is None


def test_progress_on_counts_total(tmp_path):
    stream = tmp_path / "stream.jsonl"
    stream.write_text("{}\n{}\n")

    bar = publish_progress([str(stream)], enabled=True)
    try:
        assert bar.total == 2
        assert "events" in bar.unit
    finally:
        bar.close()
