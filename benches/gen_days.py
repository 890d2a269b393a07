#!/usr/bin/env python3
"""Day N of a daily series derived from the benchmark's day 1 (stdlib only).

    python3 benches/gen_days.py DAY1.jsonl N OUT.jsonl

Day N (N >= 2) is day 1 with a `rev` property set to N on a fixed 1% of
the entities (the "hot" ones: line i with h(i) = 0 mod 100, h a fixed
hash), so every day rewrites the same 1% and each day's versions of them
are superseded the next day: forgetting a day leaves its versions with no
snapshot. Streams: memory stays flat.
"""

import sys


def h(i):
    x = (i * 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
    x ^= x >> 31
    return x % 100


def main():
    src, n, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    with open(src, "rb") as f, open(out, "wb") as o:
        for i, line in enumerate(f):
            if n >= 2 and h(i) == 0:
                line = line.replace(
                    b'"properties":{',
                    b'"properties":{"rev":{"integerValue":"%d"},' % n,
                    1,
                )
            o.write(line)


main()
