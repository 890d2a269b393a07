#!/usr/bin/env python3
"""Throughput benchmark for the kindsnap dev server (server.py).

    "$PY" tests/devserver/bench.py                       # 100,000 entities
    "$PY" tests/devserver/bench.py -n 20000 --memory     # no --storage
    "$PY" tests/devserver/bench.py --url http://127.0.0.1:PORT   # a running server

Starts server.py (with ``--storage`` in a temporary directory unless
``--memory``), then:

1. commit: N small entities (~300 bytes serialized) as upserts, ``--per-commit``
   (500) per commit, from ``--clients`` (4) concurrent connections;
2. scan: reads the kind back with ``runQuery`` ordered by ``__key__``, one
   batch (the server's ``--batch-size``, 300) per call, resuming from each
   batch's ``endCursor``, and checks every key came back once, in order;
3. lookup: ``--lookups`` (20) lookups of 1000 keys each (deferred keys are
   looked up again);
4. ids: ``allocateIds`` and ``reserveIds`` of 500 keys, ``--id-calls`` (20) each;
5. restart (with storage, not with ``--url``): ``kill -9``, then the time until
   a new server on the same storage answers, and a count of what it kept.

Prints entities/s (or keys/s) per phase.  Standard library only: the client
side is ``http.client``; the server runs under ``--python`` (default: this
interpreter, which must be the dev-server venv's python).
"""

import argparse
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
SERVER = os.path.join(HERE, 'server.py')
PROJECT = 'bench'
KIND = 'Bench'
PAD = 'x' * 200


class Client(object):
    """One keep-alive HTTP connection."""

    def __init__(self, url):
        u = urllib.parse.urlsplit(url)
        self.host, self.port = u.hostname, u.port
        self.conn = None

    def call(self, verb, body):
        data = json.dumps(body).encode('utf-8')
        for attempt in range(3):
            try:
                if self.conn is None:
                    self.conn = http.client.HTTPConnection(self.host, self.port,
                                                           timeout=600)
                self.conn.request('POST', '/v1/projects/%s:%s' % (PROJECT, verb),
                                  data, {'Content-Type': 'application/json'})
                r = self.conn.getresponse()
                out = r.read()
                break
            except (http.client.HTTPException, OSError):
                if self.conn is not None:
                    self.conn.close()
                self.conn = None
                if attempt == 2:
                    raise
        if r.status != 200:
            raise RuntimeError('%s -> %d %s' % (verb, r.status, out[:500]))
        return json.loads(out)


def key(i):
    return {'partitionId': {'projectId': PROJECT},
            'path': [{'kind': KIND, 'id': str(i)}]}


def entity(i):
    return {'key': key(i), 'properties': {
        'n': {'integerValue': str(i)},
        's': {'stringValue': 'entity-%012d' % i},
        't': {'timestampValue': '2024-01-02T03:04:05.123456Z'},
        'pad': {'stringValue': PAD, 'excludeFromIndexes': True},
    }}


def start_server(python, server, args):
    log = tempfile.TemporaryFile(mode='w+')
    proc = subprocess.Popen([python, server, '--port', '0'] + args,
                            stdout=subprocess.PIPE, stderr=log, text=True)
    line = proc.stdout.readline()
    if not line.startswith('LISTENING '):
        proc.kill()
        proc.wait()
        log.seek(0)
        raise RuntimeError('server did not start: %r %s' % (line, log.read()))
    return proc, line.split()[1], log


def rate(n, secs):
    return '%10.0f/s  (%d in %.2f s)' % (n / secs if secs else 0, n, secs)


class CpuClock(object):
    """CPU seconds (user + system) used by the server process so far, from
    /proc (Linux; None elsewhere or for --url): on a shared machine less
    noisy than wall time."""

    def __init__(self, proc):
        self.path = '/proc/%d/stat' % proc.pid if proc is not None else None

    def __call__(self):
        try:
            with open(self.path) as f:
                fields = f.read().rsplit(')', 1)[1].split()
        except (OSError, TypeError):
            return None
        return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')


def cpu_note(clock, start):
    now = clock()
    return '' if now is None or start is None else \
        '  [server CPU %.1f s]' % (now - start)


def phase_commit(url, n, clients, per_commit):
    ids = list(range(1, n + 1))
    chunks = [ids[i:i + per_commit] for i in range(0, n, per_commit)]
    lock = threading.Lock()
    errors = []

    def worker():
        c = Client(url)
        while True:
            with lock:
                if not chunks or errors:
                    return
                chunk = chunks.pop()
            try:
                c.call('commit', {'mode': 'NON_TRANSACTIONAL', 'mutations': [
                    {'upsert': entity(i)} for i in chunk]})
            except Exception as e:  # noqa: BLE001 - reported below
                with lock:
                    errors.append(e)
                return

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    secs = time.monotonic() - t0
    if errors:
        raise errors[0]
    return secs


def phase_scan(url, n, keys_only=False):
    c = Client(url)
    query = {'kind': [{'name': KIND}],
             'order': [{'property': {'name': '__key__'}}]}
    if keys_only:
        query['projection'] = [{'property': {'name': '__key__'}}]
    seen, batches, cursor = 0, 0, None
    last = 0
    t0 = time.monotonic()
    while True:
        q = dict(query)
        if cursor:
            q['startCursor'] = cursor
        b = c.call('runQuery', {'query': q})['batch']
        batches += 1
        for r in b.get('entityResults', []):
            i = int(r['entity']['key']['path'][0]['id'])
            if i <= last:
                raise RuntimeError('scan out of order: %d after %d' % (i, last))
            last = i
            seen += 1
        cursor = b.get('endCursor')
        if b['moreResults'] != 'NOT_FINISHED':
            break
    secs = time.monotonic() - t0
    if seen != n:
        raise RuntimeError('scan saw %d entities, want %d' % (seen, n))
    return secs, batches


def phase_lookup(url, n, lookups):
    c = Client(url)
    step = max(1, n // 1000)
    total = 0
    t0 = time.monotonic()
    for j in range(lookups):
        keys = [key(1 + (j + i * step) % n) for i in range(min(1000, n))]
        while keys:
            out = c.call('lookup', {'keys': keys})
            total += len(out.get('found', []))
            keys = out.get('deferred', [])
    return time.monotonic() - t0, total


def phase_ids(url, calls):
    c = Client(url)
    incomplete = {'partitionId': {'projectId': PROJECT}, 'path': [{'kind': 'Ids'}]}
    t0 = time.monotonic()
    for _ in range(calls):
        c.call('allocateIds', {'keys': [incomplete] * 500})
    t_alloc = time.monotonic() - t0
    t0 = time.monotonic()
    for j in range(calls):
        c.call('reserveIds', {'keys': [
            {'partitionId': {'projectId': PROJECT},
             'path': [{'kind': 'Ids', 'id': str(1 + j * 500 + i)}]}
            for i in range(500)]})
    return t_alloc, time.monotonic() - t0


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('-n', '--entities', type=int, default=100000)
    p.add_argument('--clients', type=int, default=4)
    p.add_argument('--per-commit', type=int, default=500)
    p.add_argument('--lookups', type=int, default=20)
    p.add_argument('--id-calls', type=int, default=20)
    p.add_argument('--memory', action='store_true',
                   help='run the server without --storage')
    p.add_argument('--url', help='use this running server (wipe it with /reset '
                   'first yourself)')
    p.add_argument('--python', default=sys.executable,
                   help='python to run server.py with')
    p.add_argument('--server', default=SERVER,
                   help='server script to start (default: server.py beside '
                   'this file; e.g. an older copy to compare)')
    p.add_argument('--skip', default='', help='comma-separated phases to skip: '
                   'scan,keys,lookup,ids,restart')
    p.add_argument('server_args', nargs='*', help='extra server.py flags (after --)')
    a = p.parse_args()
    skip = set(filter(None, a.skip.split(',')))
    tmp = tempfile.mkdtemp(prefix='kindsnap-bench-')
    storage = None if a.memory else os.path.join(tmp, 'ds.bin')
    args = list(a.server_args) + (['--storage', storage] if storage else [])
    proc = log = None
    try:
        if a.url:
            url = a.url
        else:
            proc, url, log = start_server(a.python, a.server, args)
        print('server: %s %s' % (url, ' '.join(args)))
        sys.stdout.flush()
        clock = CpuClock(proc)
        n = a.entities
        c0 = clock()
        secs = phase_commit(url, n, a.clients, a.per_commit)
        print('commit  %s  %d clients, %d per commit%s' % (
            rate(n, secs), a.clients, a.per_commit, cpu_note(clock, c0)))
        if 'scan' not in skip:
            c0 = clock()
            secs, batches = phase_scan(url, n)
            print('scan    %s  %d batches%s' % (rate(n, secs), batches,
                                              cpu_note(clock, c0)))
        if 'keys' not in skip:
            c0 = clock()
            secs, batches = phase_scan(url, n, keys_only=True)
            print('keys    %s  %d batches (keys-only)%s' % (
                rate(n, secs), batches, cpu_note(clock, c0)))
        if 'lookup' not in skip and a.lookups:
            c0 = clock()
            secs, found = phase_lookup(url, n, a.lookups)
            print('lookup  %s  %d x 1000 keys%s' % (rate(found, secs), a.lookups,
                                                    cpu_note(clock, c0)))
        if 'ids' not in skip and a.id_calls:
            c0 = clock()
            t_alloc, t_res = phase_ids(url, a.id_calls)
            print('alloc   %s  allocateIds, 500 per call' %
                  rate(500 * a.id_calls, t_alloc))
            print('reserve %s  reserveIds, 500 per call%s' % (
                rate(500 * a.id_calls, t_res), cpu_note(clock, c0)))
        if storage and proc is not None and 'restart' not in skip:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            proc.stdout.close()
            log.close()
            proc = None
            t0 = time.monotonic()
            proc, url, log = start_server(a.python, a.server, args)
            startup = time.monotonic() - t0
            secs, _ = phase_scan(url, n, keys_only=True)
            print('restart %.2f s after kill -9 (%d entities kept; keys-only '
                  'rescan %.2f s)' % (startup, n, secs))
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            proc.stdout.close()
            log.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == '__main__':
    main()
