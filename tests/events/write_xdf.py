"""Writes an XDF 1.0 file as LabRecorder would for a session with aullm: for tests/python_examples.rs.

Usage: write_xdf.py EVENTS.jsonl OUT.xdf NAME

Streams: "EEG" (type EEG, 8 float32 channels at 500 Hz, from 1 s before the first event's onset to
1 s after the last offset on LSL's clock, i.e. the events' lsl_s) and NAME (type Markers, 1 string
channel, irregular rate: each event's JSON stamped with its apex lsl_s, as aullm's lsl:NAME sink
stamps it). Chunks in time order, each stream's samples in chunks of at most 100, ClockOffset chunks
(offset 0: one computer) and a Boundary chunk every 10 sample chunks, a StreamFooter per stream.

Format (https://github.com/sccn/xdf/wiki/Specifications): "XDF:", then chunks
[NumLengthBytes][Length][Tag u16][Content], all little-endian; Length counts Tag + Content.
"""
import json
import math
import struct
import sys
import uuid

EEG_RATE = 500.0
EEG_CHANNELS = 8
BOUNDARY = bytes.fromhex("43A546DCCBF5410FB30ED5467383CBE4")  # the Boundary chunk's fixed UUID


def varlen(n):
    if n < 256:
        return struct.pack("<BB", 1, n)
    if n < 2**32:
        return struct.pack("<BI", 4, n)
    return struct.pack("<BQ", 8, n)


def chunk(tag, content):
    return varlen(len(content) + 2) + struct.pack("<H", tag) + content


def stream_header(sid, name, typ, nch, rate, fmt, source_id, desc=""):
    xml = (
        '<?xml version="1.0"?><info>'
        f"<name>{name}</name><type>{typ}</type><channel_count>{nch}</channel_count>"
        f"<nominal_srate>{rate:g}</nominal_srate><channel_format>{fmt}</channel_format>"
        f"<source_id>{source_id}</source_id><version>1.1</version>"
        "<created_at>0</created_at><uid>" + str(uuid.uuid4()) + "</uid>"
        "<session_id>default</session_id><hostname>localhost</hostname>"
        f"<desc>{desc}</desc></info>"
    )
    return chunk(2, struct.pack("<I", sid) + xml.encode())


def samples(sid, stamps, values, fmt):
    out = bytearray(struct.pack("<I", sid) + varlen(len(stamps)))
    for t, v in zip(stamps, values):
        out += b"\x08" + struct.pack("<d", t)
        if fmt == "string":
            for s in v:
                b = s.encode()
                out += varlen(len(b)) + b
        else:
            out += struct.pack(f"<{len(v)}f", *v)
    return chunk(3, bytes(out))


def clock_offset(sid, t, offset=0.0):
    return chunk(4, struct.pack("<Idd", sid, t, offset))


def footer(sid, first, last, count, offsets):
    xml = (
        '<?xml version="1.0"?><info>'
        f"<first_timestamp>{first!r}</first_timestamp><last_timestamp>{last!r}</last_timestamp>"
        f"<sample_count>{count}</sample_count><clock_offsets>"
        + "".join(f"<offset><time>{t!r}</time><value>0</value></offset>" for t in offsets)
        + "</clock_offsets></info>"
    )
    return chunk(6, struct.pack("<I", sid) + xml.encode())


def main(events_path, out_path, name):
    lines = [l.strip() for l in open(events_path) if l.strip()]
    events = [json.loads(l) for l in lines]
    assert events, "no events"
    t0 = min(e["onset"]["lsl_s"] for e in events) - 1.0
    t1 = max(e["offset"]["lsl_s"] for e in events) + 1.0
    n = int(math.ceil((t1 - t0) * EEG_RATE)) + 1
    eeg_t = [t0 + k / EEG_RATE for k in range(n)]
    eeg_v = [
        [10.0 * math.sin(2 * math.pi * 10 * t + c) for c in range(EEG_CHANNELS)] for t in eeg_t
    ]
    mk_t = [e["apex"]["lsl_s"] for e in events]
    mk_v = [[l] for l in lines]  # the same bytes as the sinks send

    eeg_desc = "<channels>" + "".join(
        f"<channel><label>C{c + 1}</label><unit>microvolts</unit><type>EEG</type></channel>"
        for c in range(EEG_CHANNELS)
    ) + "</channels>"
    out = bytearray(b"XDF:")
    out += chunk(1, b'<?xml version="1.0"?><info><version>1.0</version></info>')
    out += stream_header(1, "EEG", "EEG", EEG_CHANNELS, EEG_RATE, "float32", "test-eeg", eeg_desc)
    out += stream_header(2, name, "Markers", 1, 0.0, "string", "aullm-test")
    out += clock_offset(1, t0)
    out += clock_offset(2, t0)

    # Sample chunks of at most 100 samples, merged in time order (as a recorder receives them).
    pieces = []
    for k in range(0, n, 100):
        pieces.append((eeg_t[k], 1, eeg_t[k : k + 100], eeg_v[k : k + 100], "float32"))
    for k in range(len(mk_t)):
        pieces.append((mk_t[k], 2, mk_t[k : k + 1], mk_v[k : k + 1], "string"))
    pieces.sort(key=lambda p: (p[0], p[1]))
    for i, (_, sid, st, va, fmt) in enumerate(pieces):
        out += samples(sid, st, va, fmt)
        if i % 10 == 9:
            out += chunk(5, BOUNDARY)
    out += clock_offset(1, t1)
    out += clock_offset(2, t1)
    out += footer(1, eeg_t[0], eeg_t[-1], n, [t0, t1])
    out += footer(2, mk_t[0], mk_t[-1], len(mk_t), [t0, t1])
    with open(out_path, "wb") as f:
        f.write(out)
    print(f"wrote {out_path}: EEG {n} samples, {name} {len(mk_t)} markers")


if __name__ == "__main__":
    main(*sys.argv[1:4])
