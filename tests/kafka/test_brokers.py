"""The test brokers themselves: a broker that cannot start says why, with its own log."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tests.services.kafka import KafkaCluster


def test_broker_that_cannot_start_fails_with_its_log(tmp_path: Path) -> None:
    cluster = KafkaCluster(tmp_path, 1)
    cluster.setup()
    (node,) = cluster.nodes
    # Someone else holds the controller port: the broker formats, starts and exits.
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", node.controller_port))
        squatter.listen()
        try:
            with pytest.raises(RuntimeError) as failure:
                cluster.start()
        finally:
            cluster.stop()
    text = str(failure.value)
    assert text.startswith("Kafka node 1 exited during start-up (code 1)\n")
    assert "--- node 1 server.log (last " in text
    assert f"127.0.0.1:{node.controller_port}" in text
    assert "Address already in use" in text
