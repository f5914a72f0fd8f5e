from __future__ import annotations

import pytest

from convscope.cli.main import main
from convscope.cli.serve import is_loopback


@pytest.mark.parametrize(
    "host, loop",
    [
        ("127.0.0.1", True),
        ("127.8.0.3", True),
        ("::1", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("192.168.1.4", False),
        ("::", False),
        ("example.org", False),
    ],
)
def test_loopback_hosts(host, loop):
    assert is_loopback(host) is loop


def test_bad_port_is_an_error(capsys):
    assert main(["serve", "--model", "tests.models:tiny_bundle", "--port", "70000"]) == 2
    assert "--port" in capsys.readouterr().err
