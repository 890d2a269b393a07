#!/usr/bin/env python3
"""Day N of a daily series derived from the benchmark's day 1 (stdlib only).

    python3 benches/gen_days.py DAY1.jsonl N OUT.jsonl

Day N is day 1 with a `rev` property on 1% of the entities: entity i
(its line number) carries rev = the latest day k <= N with
k = h(i) mod 100, h a fixed hash, so each day changes exactly the 1% of
entities whose turn it is and keeps every earlier change. Streams: memory
stays flat.
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
            k = n - ((n - h(i)) % 100)
            if k >= 2:
                line = line.replace(
                    b'"properties":{',
                    b'"properties":{"rev":{"integerValue":"%d"},' % k,
                    1,
                )
            o.write(line)


main()
