"""`steer controllers` refuses a cluster CIDR and node mask size that cannot be carved."""

from __future__ import annotations

import pytest

from services.controllers.__main__ import main


@pytest.mark.parametrize(
    ("argv", "error"),
    [
        (["--cluster-cidr", "10.244.0.1/16"], "has host bits set"),
        (["--cluster-cidr", "fd00::/64"], "--cluster-cidr/--node-cidr-mask-size"),
        (["--cluster-cidr", "10.244.0.0"], "node CIDR mask size /24 must be between"),  # a /32
        (["--node-cidr-mask-size", "8"], "must be between the cluster CIDR's (/16) and /32"),
        (["--cluster-cidr", "10.0.0.0/8", "--node-cidr-mask-size", "26"], "more than 16 bits longer"),
    ],
)
def test_bad_node_cidr_flags(argv: list[str], error: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    assert error in capsys.readouterr().err
