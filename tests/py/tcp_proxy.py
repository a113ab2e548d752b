"""Forwards TCP connections from a loopback port to an upstream host:port.

usage: tcp_proxy.py LISTEN_PORT UPSTREAM_HOST:PORT

Killing the process cuts every connection at once (a broker that vanished);
starting it again on the same port brings the broker back.
"""
import asyncio, sys


async def pipe(r, w):
    try:
        while data := await r.read(65536):
            w.write(data)
            await w.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        w.close()


async def main(port, upstream):
    host, uport = upstream.rsplit(":", 1)

    async def handle(cr, cw):
        try:
            ur, uw = await asyncio.open_connection(host, int(uport))
        except OSError:
            cw.close()
            return
        await asyncio.gather(pipe(cr, uw), pipe(ur, cw))

    server = await asyncio.start_server(handle, "127.0.0.1", port, reuse_address=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), sys.argv[2]))
