"""The soak's readers (scripts/soak.sh): a TCP client, a WebSocket client (websockets) and an LSL
marker inlet (pylsl), each recording the `seq` of every event it receives, until SIGTERM.

Usage: soak_clients.py TCP_ADDR WS_URL LSL_NAME OUT.json
Prints READY once all three are connected; writes {"tcp": [...], "ws": [...], "lsl": [...]}.
"""
import json
import signal
import socket
import sys
import threading

stop = threading.Event()
seqs = {"tcp": [], "ws": [], "lsl": []}
ready = {"tcp": threading.Event(), "ws": threading.Event(), "lsl": threading.Event()}


def tcp_reader(addr):
    host, port = addr.rsplit(":", 1)
    with socket.create_connection((host, int(port))) as s:
        s.settimeout(0.5)
        ready["tcp"].set()
        buf = b""
        while True:
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                if stop.is_set():
                    break
                continue
            if not chunk:
                break
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                seqs["tcp"].append(json.loads(line)["seq"])


def ws_reader(url):
    from websockets.sync.client import connect
    with connect(url) as ws:
        ready["ws"].set()
        while True:
            try:
                msg = ws.recv(timeout=0.5)
            except TimeoutError:
                if stop.is_set():
                    break
                continue
            except Exception:
                break
            seqs["ws"].append(json.loads(msg)["seq"])


def lsl_reader(name):
    import pylsl
    found = pylsl.resolve_byprop("name", name, timeout=60)
    if not found:
        print("LSL outlet not found", file=sys.stderr, flush=True)
        return
    inlet = pylsl.StreamInlet(found[0], max_buflen=360)
    inlet.open_stream(timeout=60)
    ready["lsl"].set()
    while True:
        sample, _ = inlet.pull_sample(timeout=0.5)
        if sample is None:
            if stop.is_set():
                break
            continue
        seqs["lsl"].append(json.loads(sample[0])["seq"])


def main():
    tcp_addr, ws_url, lsl_name, out = sys.argv[1:5]
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    threads = [
        threading.Thread(target=tcp_reader, args=(tcp_addr,)),
        threading.Thread(target=ws_reader, args=(ws_url,)),
        threading.Thread(target=lsl_reader, args=(lsl_name,)),
    ]
    for t in threads:
        t.start()
    for r in ready.values():
        r.wait(90)
    print("READY", flush=True)
    while not stop.is_set():
        stop.wait(0.5)
    for t in threads:
        t.join(30)
    with open(out, "w") as f:
        json.dump(seqs, f)


if __name__ == "__main__":
    main()
