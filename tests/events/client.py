"""Real clients for tests/events.rs: a WebSocket client (websockets) and an LSL inlet (pylsl).

Usage:
  client.py ws URL N [TOKEN]   print each of N text messages on its own line, then "END";
                               "REJECTED <status>" if the handshake is refused
  client.py ws-quit URL K      read K messages, then close the connection (a client leaving mid-run)
  client.py lsl NAME N         resolve outlets NAME (markers) and NAME_AU, print READY, then N lines of
                               JSON {"marker", "marker_ts", "values", "values_ts"}; first a line with
                               {"labels", "offset"} where offset = local_clock() - CLOCK_MONOTONIC seconds
"""
import asyncio
import json
import sys
import time


async def ws_main(url, n, token, quit_after=None):
    import websockets
    headers = {"Authorization": f"Bearer {token}"} if token else None
    try:
        async with websockets.connect(url, additional_headers=headers) as ws:
            print("READY", flush=True)
            got = 0
            async for msg in ws:
                print(msg, flush=True)
                got += 1
                if quit_after is not None and got >= quit_after:
                    break
                if got >= n:
                    break
            if quit_after is None:
                # The server closes after draining: wait for that clean close.
                try:
                    await asyncio.wait_for(ws.wait_closed(), 30)
                except asyncio.TimeoutError:
                    pass
            if quit_after is None and ws.close_code != 1000:
                print(f"UNCLEAN CLOSE {ws.close_code}", flush=True)
            print("END", flush=True)
    except websockets.exceptions.InvalidStatus as e:
        print(f"REJECTED {e.response.status_code}", flush=True)


def lsl_main(name, n):
    import pylsl
    markers = pylsl.resolve_byprop("name", name, timeout=30)
    au = pylsl.resolve_byprop("name", name + "_AU", timeout=30)
    if not markers or not au:
        print("NOT FOUND", flush=True)
        return
    mi = pylsl.StreamInlet(markers[0])
    ai = pylsl.StreamInlet(au[0])
    mi.open_stream(timeout=30)
    ai.open_stream(timeout=30)
    info = ai.info(timeout=30)
    ch = info.desc().child("channels").child("channel")
    labels = []
    while not ch.empty():
        labels.append(ch.child_value("label"))
        ch = ch.next_sibling()
    best = None
    for _ in range(9):
        m0 = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
        l = pylsl.local_clock()
        m1 = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
        if best is None or m1 - m0 < best[0]:
            best = (m1 - m0, l - (m0 + (m1 - m0) / 2) / 1e9)
    mtype = mi.info(timeout=30).type()
    print(json.dumps({"labels": labels, "offset": best[1], "marker_type": mtype, "au_type": info.type()}), flush=True)
    print("READY", flush=True)
    for _ in range(n):
        m, mts = mi.pull_sample(timeout=60)
        v, vts = ai.pull_sample(timeout=60)
        if m is None or v is None:
            print("TIMEOUT", flush=True)
            return
        print(json.dumps({"marker": m[0], "marker_ts": mts, "values": v, "values_ts": vts}), flush=True)
    print("END", flush=True)


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "ws":
        asyncio.run(ws_main(sys.argv[2], int(sys.argv[3]), sys.argv[4] if len(sys.argv) > 4 else None))
    elif mode == "ws-quit":
        asyncio.run(ws_main(sys.argv[2], 10**9, None, quit_after=int(sys.argv[3])))
    elif mode == "lsl":
        lsl_main(sys.argv[2], int(sys.argv[3]))
    else:
        sys.exit(f"unknown mode {mode}")
