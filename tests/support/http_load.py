"""Many HTTP clients looping on the service's port, as fast as it answers (keep-alive, HTTP/1.1).

`python -m tests.support.http_load HOST PORT SECONDS CLIENTS` runs for SECONDS or until SIGTERM, then
prints one JSON object: requests per path and status. Raw sockets keep the client's own cost small.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections import Counter

PATHS = ("/status", "/metrics", "/readyz")


async def client(host: str, port: int, path: str, counts: Counter[str]) -> None:
    request = f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: keep-alive\r\n\r\n".encode()
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None
    while True:
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection(host, port)
            assert reader is not None
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = head.split(b" ", 2)[1].decode()
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            await reader.readexactly(length)
            counts[f"{path} {status}"] += 1
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            counts[f"{path} error"] += 1
            if writer is not None:
                writer.close()
            reader = writer = None
            await asyncio.sleep(0.05)


async def main(host: str, port: int, seconds: float, clients: int) -> Counter[str]:
    counts: Counter[str] = Counter()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.call_later(seconds, stop.set)
    tasks = [asyncio.create_task(client(host, port, PATHS[i % len(PATHS)], counts)) for i in range(clients)]
    await stop.wait()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return counts


if __name__ == "__main__":
    host, port, seconds, clients = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
    print(json.dumps(dict(asyncio.run(main(host, port, seconds, clients)))))
