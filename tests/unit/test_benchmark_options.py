"""The benchmark rejects invalid fetch options before it starts a broker."""

from __future__ import annotations

import pytest

from processor.benchmark import main


@pytest.mark.parametrize(
    "option, value, setting",
    [
        ("--fetch-min-bytes", "0", "FLYTE_STATE_FETCH_MIN_BYTES"),
        ("--fetch-min-bytes", "52428801", "FLYTE_STATE_FETCH_MIN_BYTES"),
        ("--fetch-max-wait-seconds", "0", "FLYTE_STATE_FETCH_MAX_WAIT_SECONDS"),
        ("--fetch-max-wait-seconds", "5.5", "FLYTE_STATE_FETCH_MAX_WAIT_SECONDS"),
    ],
)
def test_invalid_fetch_option_rejected(capsys, option, value, setting):
    with pytest.raises(SystemExit) as exit_info:
        main([option, value])

    assert exit_info.value.code == 2
    assert setting in capsys.readouterr().err
