"""Send garbage and truncated QUIC datagrams at a node's QUIC port (run inside another node's
network namespace): ``python flood.py HOST PORT [COUNT] [SEED]``. Prints one JSON object: how
many datagrams of each shape were sent, and how long sending took.

The QUIC-shaped ones start from real client Initials, made by aioquic's own client (a
`QuicConnection` asked to connect, its first datagram taken, nothing sent by it), so their
headers are what a real peer sends:

- ``random``: random bytes, 0-1500 of them;
- ``truncated-initial``: a real Initial cut short (under 1200 bytes, so no server may take it);
- ``rewritten-initial``: a real Initial whose destination connection id was replaced, so it no
  longer decrypts to a ClientHello (full size: a server must try);
- ``replayed-initial``: one such Initial, again and again;
- ``short-header``: short-header packets for connection ids nobody holds.
"""

from __future__ import annotations

import json
import random
import socket
import sys
import time
from collections.abc import Callable

from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection

SHARES = {  # percent of the datagrams sent
    "random": 25,
    "truncated-initial": 30,
    "rewritten-initial": 20,
    "replayed-initial": 10,
    "short-header": 15,
}
DCID_AT = 6  # a long header: flags (1), version (4), dcid length (1), dcid
BURST, PAUSE_S = 20, 0.008  # about 2,000 a second: what one daemon reads on a busy core


def real_initials(count: int) -> list[bytes]:
    """The first datagram of `count` fresh aioquic client connections (each an Initial)."""
    out = []
    for _ in range(count):
        conn = QuicConnection(
            configuration=QuicConfiguration(is_client=True, alpn_protocols=["edgenode/1"])
        )
        conn.connect(("::1", 7946, 0, 0), now=0.0)
        [(datagram, _)] = conn.datagrams_to_send(now=0.0)
        out.append(datagram)
    return out


def datagrams(count: int, rng: random.Random) -> list[tuple[str, bytes]]:
    initials = real_initials(200)

    def rewritten() -> bytes:
        d = rng.choice(initials)
        size = d[DCID_AT - 1]
        return d[:DCID_AT] + rng.randbytes(size) + d[DCID_AT + size :]

    replayed = rewritten()
    make: dict[str, Callable[[], bytes]] = {
        "random": lambda: rng.randbytes(rng.randint(0, 1500)),
        "truncated-initial": lambda: rng.choice(initials)[: rng.randint(1, 1199)],
        "rewritten-initial": rewritten,
        "replayed-initial": lambda: replayed,
        "short-header": lambda: bytes([0x40 | rng.randint(0, 63)]) + rng.randbytes(40),
    }
    out = [
        (shape, make[shape]()) for shape, pct in SHARES.items() for _ in range(pct * count // 100)
    ]
    rng.shuffle(out)
    return out


def main(argv: list[str]) -> None:
    host, port = argv[1], int(argv[2])
    count = int(argv[3]) if len(argv) > 3 else 10_000
    rng = random.Random(int(argv[4]) if len(argv) > 4 else 1)
    batch = datagrams(count, rng)
    sent: dict[str, int] = {}
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    started = time.monotonic()
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        for i, (shape, data) in enumerate(batch):
            s.sendto(data, (host, port))
            sent[shape] = sent.get(shape, 0) + 1
            if i % BURST == BURST - 1:
                time.sleep(PAUSE_S)  # let the node read rather than its kernel drop
    took = time.monotonic() - started
    print(json.dumps({"sent": sent, "total": sum(sent.values()), "seconds": round(took, 2)}))


if __name__ == "__main__":
    main(sys.argv)
