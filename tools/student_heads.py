#!/usr/bin/env python3
"""A copy of a score-student model file that keeps only its first K heads.

A student fitted with `heads = N` holds N heads trained on the same patches, one after the
other in the payload; its map is their mean. Head 0 is, bit for bit, the one-head student of
the same seed, and the first K heads are the K-head student's, so one fit with N heads gives
the K-head models of the same seed for every K <= N (docs/results.md, "Several heads").

    python3 tools/student_heads.py MODEL.student K OUT.student

The container (ad_core::model_file): magic [8] | u32 version | u64 header length | header
(JSON) | u64 payload length | payload (f32 little-endian) | u32 CRC-32 of all before it.
Only the header's `"heads":N` and its training losses (the first K heads' epochs) and the
payload's length change; everything else is copied.
"""
import json
import struct
import sys
import zlib


def main() -> None:
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    src, k, dst = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    data = open(src, "rb").read()
    if data[:8] != b"ADSTUDNT":
        sys.exit(f"{src}: not a student model file")
    body, crc = data[:-4], struct.unpack("<I", data[-4:])[0]
    if zlib.crc32(body) != crc:
        sys.exit(f"{src}: checksum mismatch")
    version = data[8:12]
    (hlen,) = struct.unpack("<Q", data[12:20])
    header = data[20 : 20 + hlen]
    at = 20 + hlen
    (plen,) = struct.unpack("<Q", data[at : at + 8])
    payload = data[at + 8 : at + 8 + plen]
    n = json.loads(header)["config"].get("heads", 1)
    if not 1 <= k <= n:
        sys.exit(f"{src} holds {n} heads: K must be in 1..={n}")
    if plen % (4 * n):
        sys.exit(f"{src}: {plen} payload bytes are not {n} equal heads")
    old = f'"heads":{n}'.encode()
    if header.count(old) != 1:
        sys.exit(f"{src}: the header names the heads {header.count(old)} times, not once")
    header = header.replace(old, f'"heads":{k}'.encode())
    # The training losses are the heads' epochs one head after the other: keep the first K
    # heads' (only that array is rewritten; every other value keeps its bytes).
    key = b'"losses":['
    if header.count(key) != 1:
        sys.exit(f"{src}: the header holds {header.count(key)} loss arrays, not one")
    start = header.index(key) + len(key) - 1
    end = header.index(b"]", start) + 1
    losses = json.loads(header[start:end])
    if len(losses) % n:
        sys.exit(f"{src}: {len(losses)} epoch losses are not {n} equal heads")
    kept = json.dumps(losses[: len(losses) // n * k], separators=(",", ":")).encode()
    header = header[:start] + kept + header[end:]
    payload = payload[: plen // n * k]
    out = (
        b"ADSTUDNT"
        + version
        + struct.pack("<Q", len(header))
        + header
        + struct.pack("<Q", len(payload))
        + payload
    )
    out += struct.pack("<I", zlib.crc32(out))
    open(dst, "wb").write(out)


if __name__ == "__main__":
    main()
