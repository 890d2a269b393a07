"""Tests for the kindsnap dev server (tests/devserver/server.py).

Run from the repository root with the dev-server venv's python:

    "$(tests/devserver/setup.sh)" -m unittest tests/devserver/test_devserver.py -v

Every test talks real HTTP to a server.py subprocess started on port 0.
"""

import base64
import copy
import functools
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.error
import urllib.request
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
SERVER = os.path.join(HERE, 'server.py')
PROJECT = 'p'


class DevServer(object):
    """server.py as a subprocess."""

    def __init__(self, *args):
        self.args = list(args)
        self.proc = None
        self.url = None

    def start(self):
        self.log = tempfile.TemporaryFile(mode='w+')
        self.proc = subprocess.Popen(
            [sys.executable, SERVER, '--port', '0'] + self.args,
            stdout=subprocess.PIPE, stderr=self.log, text=True)
        line = self.proc.stdout.readline()
        if not line.startswith('LISTENING '):
            self.proc.kill()
            self.proc.wait()
            self.log.seek(0)
            raise RuntimeError('server did not start: %r %s'
                               % (line, self.log.read()))
        self.url = line.split()[1]
        return self

    def stop(self, sig=signal.SIGTERM):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc:
            self.proc.stdout.close()
            self.log.close()
        self.proc = None

    def raw(self, path, data, method='POST'):
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header('Content-Type', 'application/json')
        try:
            with urllib.request.urlopen(req, timeout=120) as r:
                return r.status, json.loads(r.read()), dict(r.headers)
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read()), dict(e.headers)

    def call(self, verb, body, project=PROJECT):
        return self.raw('/v1/projects/%s:%s' % (project, verb),
                        json.dumps(body).encode('utf-8'))[:2]

    def ok(self, verb, body, project=PROJECT):
        code, out = self.call(verb, body, project)
        if code != 200:
            raise AssertionError('%s -> %d %s' % (verb, code, out))
        return out


def key(*path, ns=None, project=PROJECT):
    """key('K', 1, 'Child', 'name') ; an odd trailing kind = incomplete."""
    k = {'partitionId': {'projectId': project}, 'path': []}
    if ns:
        k['partitionId']['namespaceId'] = ns
    for i in range(0, len(path), 2):
        el = {'kind': path[i]}
        if i + 1 < len(path):
            v = path[i + 1]
            if isinstance(v, int):
                el['id'] = str(v)
            else:
                el['name'] = v
        k['path'].append(el)
    return k


def upserts(entities, mode='NON_TRANSACTIONAL'):
    return {'mode': mode, 'mutations': [{'upsert': e} for e in entities]}


def ds_sort_key(k):
    """Datastore key order: path element by element; kind by UTF-8 bytes,
    ids (numeric) before names (UTF-8 bytes)."""
    out = []
    for el in k['path']:
        ident = (0, int(el['id']), b'') if 'id' in el else \
            (1, 0, el['name'].encode('utf-8'))
        out.append((el['kind'].encode('utf-8'), ident))
    return tuple(out)


EVERY_VALUE = {
    'null': {'nullValue': None},
    'bool': {'booleanValue': True},
    'int': {'integerValue': '-9223372036854775808'},
    'int_meaning': {'integerValue': '5', 'meaning': 99},
    'int_nonrfc': {'integerValue': '-62135596800000001', 'meaning': 7},
    'double': {'doubleValue': 1.25},
    'nan': {'doubleValue': 'NaN'},
    'inf': {'doubleValue': 'Infinity'},
    'ninf': {'doubleValue': '-Infinity'},
    'ts': {'timestampValue': '2020-01-02T03:04:05.123456Z'},
    'ts_min': {'timestampValue': '0001-01-01T00:00:00Z'},
    'ts_max': {'timestampValue': '9999-12-31T23:59:59.999999Z'},
    'ts_meaning': {'timestampValue': '1970-01-01T00:00:00.000001Z',
                   'meaning': 7, 'excludeFromIndexes': True},
    'key': {'keyValue': key('A', 3, 'B', 'x', ns='other')},
    'key_other_project': {'keyValue': key('A', 1, project='q')},
    'str': {'stringValue': 'héllo wörld ✓ 😀'},
    'str_empty': {'stringValue': ''},
    'str_meaning': {'stringValue': 'http://x', 'meaning': 2},
    'text': {'stringValue': 'x' * 5000, 'excludeFromIndexes': True,
             'meaning': 15},
    'blob': {'blobValue': base64.b64encode(bytes(range(256))[:200]).decode()},
    'blob_meaning': {'blobValue': 'AAEC', 'meaning': 16},
    'blob_long': {'blobValue': base64.b64encode(b'\xff' * 4000).decode(),
                  'excludeFromIndexes': True},
    'blob_zlib': {'blobValue': 'eJwDAAAAAAE=', 'meaning': 22,
                  'excludeFromIndexes': True},
    'geo': {'geoPointValue': {'latitude': 45.5, 'longitude': -122.25}},
    'geo_zero': {'geoPointValue': {}},
    'geo_meaning': {'geoPointValue': {'latitude': 1, 'longitude': 2},
                    'meaning': 9},
    'ent': {'entityValue': {'properties': {
        'x': {'integerValue': '1'},
        'y': {'stringValue': 'y' * 2000, 'excludeFromIndexes': True},
        'arr': {'arrayValue': {'values': [
            {'stringValue': 'a'},
            {'stringValue': 'b', 'excludeFromIndexes': True},
            {'integerValue': '3', 'meaning': 13}]}},
        'inner': {'entityValue': {'properties': {
            'deep': {'booleanValue': False, 'meaning': 18}}}},
    }}},
    'ent_excluded': {'excludeFromIndexes': True, 'entityValue': {
        'key': key('E', 7), 'properties': {'a': {'nullValue': None}}}},
    'ent_incomplete_key': {'entityValue': {'key': key('E')}},
    'ent_empty': {'entityValue': {}},
    'arr_empty': {'arrayValue': {}},
    'arr_mixed': {'arrayValue': {'values': [
        {'integerValue': '1', 'excludeFromIndexes': True},
        {'stringValue': 'two'},
        {'nullValue': None, 'meaning': 22},
        {'doubleValue': 3.5, 'excludeFromIndexes': True},
        {'entityValue': {'properties': {'z': {'integerValue': '1'}}}},
        {'keyValue': key('K', 'n')},
        {'timestampValue': '2001-02-03T04:05:06Z'},
        {'blobValue': 'AQI=', 'excludeFromIndexes': True},
        {'geoPointValue': {'latitude': -1, 'longitude': 1}},
        {'booleanValue': False},
    ]}},
    'arr_one': {'arrayValue': {'values': [{'stringValue': 'only'}]}},
    'ünïcødé näme ✓': {'stringValue': 'value'},
    'dotted.name': {'integerValue': '1'},
}


class MainServerTest(unittest.TestCase):
    """Tests sharing one in-memory server; each uses its own kinds/namespace."""

    @classmethod
    def setUpClass(cls):
        cls.srv = DevServer('--seed', '1').start()

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()

    # ------------------------------------------------------------ values --
    def test_round_trip_every_value_type(self):
        ents = []
        for i, k in enumerate([key('Every', 'one'), key('Every', 2),
                               key('Par', 'p', 'Every', 'ü✓'),
                               key('Every', 'n', ns='ns-vals')]):
            props = copy.deepcopy(EVERY_VALUE)
            props['i'] = {'integerValue': str(i)}
            ents.append({'key': k, 'properties': props})
        out = self.srv.ok('commit', upserts(ents))
        self.assertEqual(len(out['mutationResults']), 4)
        self.assertNotIn('key', out['mutationResults'][0])
        got = self.srv.ok('lookup', {'keys': [e['key'] for e in ents]})
        self.assertEqual(len(got['found']), 4)
        by_key = {json.dumps(f['entity']['key'], sort_keys=True): f['entity']
                  for f in got['found']}
        for e in ents:
            back = by_key[json.dumps(e['key'], sort_keys=True)]
            for name in e['properties']:
                self.assertEqual(back['properties'].get(name),
                                 e['properties'][name], name)
            self.assertEqual(back, e)
        # the same through runQuery (full entities and the ancestor/namespace)
        q = self.srv.ok('runQuery', {'partitionId': {'projectId': PROJECT},
                                     'query': {'kind': [{'name': 'Every'}]}})
        res = [r['entity'] for r in q['batch']['entityResults']]
        self.assertEqual(len(res), 3)
        for r in res:
            self.assertEqual(r, by_key[json.dumps(r['key'], sort_keys=True)])
        # timestamps beyond microseconds are truncated, as Google does
        e = {'key': key('Every', 'ns'), 'properties': {
            't': {'timestampValue': '2020-01-01T00:00:00.123456789Z'}}}
        self.srv.ok('commit', upserts([e]))
        got = self.srv.ok('lookup', {'keys': [e['key']]})
        self.assertEqual(got['found'][0]['entity']['properties']['t'],
                         {'timestampValue': '2020-01-01T00:00:00.123456Z'})

    def test_filter_on_values_still_works(self):
        ents = [{'key': key('Flt', i), 'properties': {
            'n': {'integerValue': str(i % 3), 'meaning': 13},
            's': {'stringValue': 'v%d' % i}}} for i in range(1, 10)]
        self.srv.ok('commit', upserts(ents))
        q = self.srv.ok('runQuery', {'query': {
            'kind': [{'name': 'Flt'}],
            'filter': {'propertyFilter': {'property': {'name': 'n'}, 'op': 'EQUAL',
                                          'value': {'integerValue': '1'}}}}})
        ids = [r['entity']['key']['path'][0]['id']
               for r in q['batch']['entityResults']]
        self.assertEqual(ids, ['1', '4', '7'])
        self.assertEqual(q['batch']['entityResults'][0]['entity']['properties']['n'],
                         {'integerValue': '1', 'meaning': 13})

    # --------------------------------------------------------- key order --
    def test_key_order_mixed(self):
        ns = 'order'
        keys = [key('O', 10, ns=ns), key('O', 2, ns=ns), key('O', 'b', ns=ns),
                key('O', 'B', ns=ns), key('O', 'é', ns=ns), key('O', 'ab', ns=ns),
                key('O', 'a', ns=ns), key('O', 9007199254740993, ns=ns),
                key('O', 1, 'O', 5, ns=ns), key('O', 1, 'O', 'x', ns=ns),
                key('O', 1, ns=ns), key('P', 1, 'O', 1, ns=ns),
                key('A', 'z', 'O', 3, ns=ns), key('O', 2, 'Q', 1, 'O', 1, ns=ns),
                key('O', 'b', 'O', 1, ns=ns), key('O', '😀', ns=ns),
                key('O', 'ｚ', ns=ns)]
        self.srv.ok('commit', upserts([{'key': k} for k in keys]))
        want = sorted(keys, key=ds_sort_key)
        part = {'projectId': PROJECT, 'namespaceId': ns}
        q = self.srv.ok('runQuery', {'partitionId': part, 'query': {
            'kind': [{'name': 'O'}], 'order': [{'property': {'name': '__key__'}}]}})
        got = [r['entity']['key'] for r in q['batch']['entityResults']]
        self.assertEqual(got, want)
        q = self.srv.ok('runQuery', {'partitionId': part, 'query': {
            'kind': [{'name': 'O'}], 'order': [{'property': {'name': '__key__'},
                                                'direction': 'DESCENDING'}]}})
        got = [r['entity']['key'] for r in q['batch']['entityResults']]
        self.assertEqual(got, want[::-1])
        # HAS_ANCESTOR and __key__ ranges
        q = self.srv.ok('runQuery', {'partitionId': part, 'query': {
            'kind': [{'name': 'O'}],
            'filter': {'propertyFilter': {'property': {'name': '__key__'},
                                          'op': 'HAS_ANCESTOR',
                                          'value': {'keyValue': key('O', 1, ns=ns)}}},
            'order': [{'property': {'name': '__key__'}}]}})
        got = [r['entity']['key'] for r in q['batch']['entityResults']]
        self.assertEqual(got, [key('O', 1, ns=ns), key('O', 1, 'O', 5, ns=ns),
                               key('O', 1, 'O', 'x', ns=ns)])
        lo, hi = key('O', 2, ns=ns), key('O', 'b', ns=ns)
        q = self.srv.ok('runQuery', {'partitionId': part, 'query': {
            'kind': [{'name': 'O'}],
            'filter': {'compositeFilter': {'op': 'AND', 'filters': [
                {'propertyFilter': {'property': {'name': '__key__'},
                                    'op': 'GREATER_THAN', 'value': {'keyValue': lo}}},
                {'propertyFilter': {'property': {'name': '__key__'},
                                    'op': 'LESS_THAN', 'value': {'keyValue': hi}}}]}},
            'order': [{'property': {'name': '__key__'}}]}})
        got = [r['entity']['key'] for r in q['batch']['entityResults']]
        self.assertEqual(got, [k for k in want
                               if ds_sort_key(lo) < ds_sort_key(k) < ds_sort_key(hi)])
        q = self.srv.ok('runQuery', {'partitionId': part, 'query': {
            'kind': [{'name': 'O'}],
            'filter': {'propertyFilter': {'property': {'name': '__key__'},
                                          'op': 'GREATER_THAN_OR_EQUAL',
                                          'value': {'keyValue': hi}}},
            'order': [{'property': {'name': '__key__'}}]}})
        got = [r['entity']['key'] for r in q['batch']['entityResults']]
        self.assertEqual(got, [k for k in want if ds_sort_key(k) >= ds_sort_key(hi)])

    # ------------------------------------------------------------ paging --
    def test_paging_with_cursors(self):
        ns = 'paging'
        ents = [{'key': key('Pg', i, ns=ns), 'properties': {
            'pad': {'stringValue': 'p' * 3000, 'excludeFromIndexes': True},
            'i': {'integerValue': str(i)}}} for i in range(1, 1001)]
        self.srv.ok('commit', upserts(ents[:500]))
        self.srv.ok('commit', upserts(ents[500:]))
        part = {'projectId': PROJECT, 'namespaceId': ns}
        query = {'kind': [{'name': 'Pg'}], 'order': [{'property': {'name': '__key__'}}]}
        seen, batches, cursor = [], 0, None
        while True:
            q = dict(query)
            if cursor:
                q['startCursor'] = cursor
            b = self.srv.ok('runQuery', {'partitionId': part, 'query': q})['batch']
            batches += 1
            rs = b.get('entityResults', [])
            self.assertLessEqual(len(rs), 300)
            self.assertEqual(b['entityResultType'], 'FULL')
            for r in rs:
                self.assertTrue(r['cursor'])
            seen += [int(r['entity']['key']['path'][0]['id']) for r in rs]
            cursor = b['endCursor']
            if b['moreResults'] != 'NOT_FINISHED':
                self.assertEqual(b['moreResults'], 'NO_MORE_RESULTS')
                break
            self.assertLess(batches, 20)
        self.assertEqual(seen, list(range(1, 1001)))
        self.assertGreaterEqual(batches, 4)  # 3 KB entities: the 1 MiB cap bites
        # limit across batches, then MORE_RESULTS_AFTER_LIMIT
        q = dict(query, limit=450, projection=[{'property': {'name': '__key__'}}])
        b = self.srv.ok('runQuery', {'partitionId': part, 'query': q})['batch']
        self.assertEqual(b['entityResultType'], 'KEY_ONLY')
        self.assertEqual(b['moreResults'], 'NOT_FINISHED')
        n = len(b['entityResults'])
        self.assertEqual(n, 300)
        self.assertEqual(set(b['entityResults'][0]['entity']), {'key'})
        q = dict(q, limit=450 - n, startCursor=b['endCursor'])
        b = self.srv.ok('runQuery', {'partitionId': part, 'query': q})['batch']
        self.assertEqual(len(b['entityResults']), 150)
        self.assertEqual(b['moreResults'], 'MORE_RESULTS_AFTER_LIMIT')
        self.assertEqual(b['entityResults'][-1]['entity']['key']['path'][0]['id'], '450')
        # a per-result cursor resumes right after that result; offset; endCursor
        c10 = b['entityResults'][9]['cursor']  # after id 310
        q = dict(query, limit=2, startCursor=c10, offset=5)
        b = self.srv.ok('runQuery', {'partitionId': part, 'query': q})['batch']
        self.assertEqual([r['entity']['key']['path'][0]['id'] for r in b['entityResults']],
                         ['316', '317'])
        self.assertEqual(b['skippedResults'], 5)
        q = dict(query, endCursor=c10, startCursor=None)
        del q['startCursor']
        b = self.srv.ok('runQuery', {'partitionId': part, 'query': dict(
            q, projection=[{'property': {'name': '__key__'}}])})['batch']
        ids = [r['entity']['key']['path'][0]['id'] for r in b['entityResults']]
        self.assertEqual(len(ids), 300)
        self.assertEqual(b['moreResults'], 'NOT_FINISHED')

    # ---------------------------------------------------------- metadata --
    def test_namespace_and_kind_metadata(self):
        proj = 'meta'
        ents = [{'key': key('K1', 1, project=proj)}, {'key': key('K2', 'a', project=proj)},
                {'key': key('K3', 1, ns='ns1', project=proj)},
                {'key': key('K4', 1, ns='ns2', project=proj)},
                {'key': key('K5', 1, 'K6', 2, ns='ns2', project=proj)}]
        self.srv.ok('commit', upserts(ents), project=proj)
        # queries of kinds without entities, deletes of missing entities do
        # not make them appear
        self.srv.ok('commit', {'mode': 'NON_TRANSACTIONAL', 'mutations': [
            {'delete': key('Ghost0', 1, project=proj)}]}, project=proj)
        for ghost in ({'kind': [{'name': 'Ghost1'}]},
                      {'kind': [{'name': 'Ghost2'}], 'filter': {'propertyFilter': {
                          'property': {'name': 'x'}, 'op': 'EQUAL',
                          'value': {'integerValue': '1'}}}}):
            self.srv.ok('runQuery', {'query': ghost}, project=proj)
        q = self.srv.ok('runQuery', {'query': {'kind': [{'name': '__namespace__'}]}},
                        project=proj)
        keys = [r['entity']['key'] for r in q['batch']['entityResults']]
        self.assertEqual([k['path'][0] for k in keys], [
            {'kind': '__namespace__', 'id': '1'},
            {'kind': '__namespace__', 'name': 'ns1'},
            {'kind': '__namespace__', 'name': 'ns2'}])
        q = self.srv.ok('runQuery', {'query': {'kind': [{'name': '__kind__'}]}},
                        project=proj)
        self.assertEqual([r['entity']['key']['path'][0]['name']
                          for r in q['batch']['entityResults']], ['K1', 'K2'])
        q = self.srv.ok('runQuery', {
            'partitionId': {'projectId': proj, 'namespaceId': 'ns2'},
            'query': {'kind': [{'name': '__kind__'}],
                      'projection': [{'property': {'name': '__key__'}}]}},
            project=proj)
        self.assertEqual([r['entity']['key']['path'][0]['name']
                          for r in q['batch']['entityResults']], ['K4', 'K6'])
        self.assertEqual(q['batch']['entityResultType'], 'KEY_ONLY')

    # ------------------------------------------------------------ limits --
    def assertError(self, res, code, status, text=None):
        got_code, body = res[:2]
        self.assertEqual(got_code, code, body)
        self.assertEqual(body['error']['code'], code)
        self.assertEqual(body['error']['status'], status)
        if text:
            self.assertIn(text, body['error']['message'])

    def test_too_many_mutations(self):
        ents = [{'key': key('Lim', i)} for i in range(1, 502)]
        self.assertError(self.srv.call('commit', upserts(ents)), 400,
                         'INVALID_ARGUMENT',
                         'cannot write more than 500 entities in a single call')
        self.srv.ok('commit', upserts(ents[:500]))

    def test_request_too_big(self):
        big = {'key': key('Lim', 'big'), 'properties': {
            'b': {'blobValue': base64.b64encode(b'x' * (11 * 1024 * 1024)).decode(),
                  'excludeFromIndexes': True}}}
        body = json.dumps(upserts([big])).encode()
        self.assertGreater(len(body), 11 * 1024 * 1024)
        res = self.srv.raw('/v1/projects/p:commit', body)
        self.assertError(res, 400, 'INVALID_ARGUMENT',
                         'Request payload size exceeds the limit: 10485760 bytes.')

    def test_entity_too_big(self):
        big = {'key': key('Lim', 'ent'), 'properties': {
            'b': {'blobValue': base64.b64encode(b'x' * (2 * 1024 * 1024)).decode(),
                  'excludeFromIndexes': True}}}
        self.assertError(self.srv.call('commit', upserts([big])), 400,
                         'INVALID_ARGUMENT', 'entity is too big')
        # just under 1 MiB in one unindexed blob is fine and comes back intact
        size = 1048487
        ok = {'key': key('Lim', 'ok'), 'properties': {
            'b': {'blobValue': base64.b64encode(os.urandom(size)).decode(),
                  'excludeFromIndexes': True, 'meaning': 16}}}
        self.srv.ok('commit', upserts([ok]))
        got = self.srv.ok('lookup', {'keys': [ok['key']]})
        self.assertEqual(got['found'][0]['entity'], ok)

    def test_indexed_string_too_long(self):
        e = {'key': key('Lim', 's'), 'properties': {'x': {'stringValue': 'a' * 2000}}}
        self.assertError(self.srv.call('commit', upserts([e])), 400, 'INVALID_ARGUMENT',
                         'The value of property "x" is longer than 1500 bytes.')
        e['properties']['x']['excludeFromIndexes'] = True
        self.srv.ok('commit', upserts([e]))
        e2 = {'key': key('Lim', 'b'), 'properties': {'arr': {'arrayValue': {'values': [
            {'blobValue': base64.b64encode(b'z' * 1501).decode()}]}}}}
        self.assertError(self.srv.call('commit', upserts([e2])), 400,
                         'INVALID_ARGUMENT', 'longer than 1500 bytes')
        e3 = {'key': key('Lim', 'c'), 'properties': {'x': {'stringValue': 'é' * 750}}}
        self.srv.ok('commit', upserts([e3]))  # exactly 1500 bytes

    def test_invalid_entities(self):
        cases = [
            {'key': key('Lim', 'r'), 'properties': {'__x__': {'nullValue': None}}},
            {'key': key('__Kind__', 'r')},
            {'key': key('Lim', 'r'), 'properties': {'a': {
                'arrayValue': {'values': []}, 'excludeFromIndexes': True}}},
            {'key': key('Lim', 'r'), 'properties': {'a': {'arrayValue': {
                'values': [{'arrayValue': {}}]}}}},
            {'key': key('Lim', 'r', project='other')},
            {'key': key('Lim', 'r'), 'properties': {'k': {'keyValue': key('K')}}},
        ]
        for e in cases:
            self.assertError(self.srv.call('commit', upserts([e])), 400,
                             'INVALID_ARGUMENT')
        self.assertError(self.srv.call('lookup', {'keys': [key('K', 1, project='q')]}),
                         400, 'INVALID_ARGUMENT')

    # ---------------------------------------------------------- mutations --
    def test_insert_update_delete(self):
        k = key('Mut', 'a')
        self.srv.ok('commit', {'mode': 'NON_TRANSACTIONAL',
                               'mutations': [{'insert': {'key': k}}]})
        self.assertError(self.srv.call('commit', {'mode': 'NON_TRANSACTIONAL',
                                                  'mutations': [{'insert': {'key': k}}]}),
                         409, 'ALREADY_EXISTS', 'entity already exists')
        self.assertError(self.srv.call('commit', {'mode': 'NON_TRANSACTIONAL', 'mutations': [
            {'update': {'key': key('Mut', 'missing')}}]}), 404, 'NOT_FOUND',
            'no entity to update')
        self.srv.ok('commit', {'mode': 'NON_TRANSACTIONAL', 'mutations': [
            {'update': {'key': k, 'properties': {'v': {'integerValue': '2'}}}}]})
        self.assertError(self.srv.call('commit', {'mode': 'NON_TRANSACTIONAL', 'mutations': [
            {'upsert': {'key': k}}, {'delete': k}]}), 400, 'INVALID_ARGUMENT',
            'multiple mutations affecting the same entity')
        out = self.srv.ok('commit', {'mode': 'NON_TRANSACTIONAL', 'mutations': [
            {'delete': k}, {'insert': {'key': key('Mut')}},
            {'upsert': {'key': key('Mut', 'a2', 'Mut')}}]})
        mr = out['mutationResults']
        self.assertNotIn('key', mr[0])
        new1, new2 = mr[1]['key'], mr[2]['key']
        self.assertEqual(new1['path'][0]['kind'], 'Mut')
        self.assertTrue(int(new1['path'][0]['id']) > 0)
        self.assertEqual(new2['path'][0], {'kind': 'Mut', 'name': 'a2'})
        self.assertIn('id', new2['path'][1])
        got = self.srv.ok('lookup', {'keys': [k, new1, new2]})
        self.assertEqual(len(got['found']), 2)
        self.assertEqual(got['missing'][0]['entity']['key'], k)
        # a failed non-transactional commit applies nothing here
        res = self.srv.call('commit', {'mode': 'NON_TRANSACTIONAL', 'mutations': [
            {'upsert': {'key': key('Mut', 'never')}}, {'insert': {'key': new1}}]})
        self.assertEqual(res[0], 409)
        got = self.srv.ok('lookup', {'keys': [key('Mut', 'never')]})
        self.assertEqual(len(got.get('found', [])), 0)

    def test_read_time_sees_one_moment(self):
        def put(name, v):
            self.srv.ok('commit', {'mode': 'NON_TRANSACTIONAL', 'mutations': [
                {'upsert': {'key': key('RT', name),
                            'properties': {'v': {'integerValue': str(v)}}}}]})
        put('a', 1)
        put('b', 1)
        t = self.srv.ok('runQuery', {'query': {'kind': [{'name': 'RT'}]}})
        at = {'readTime': t['batch']['readTime']}
        put('a', 2)
        put('c', 2)
        self.srv.ok('commit', {'mode': 'NON_TRANSACTIONAL',
                               'mutations': [{'delete': key('RT', 'b')}]})

        def values(out):
            return sorted((r['entity']['key']['path'][0]['name'],
                           r['entity']['properties']['v']['integerValue'])
                          for r in out['batch'].get('entityResults', []))
        old = self.srv.ok('runQuery', {'query': {'kind': [{'name': 'RT'}]},
                                       'readOptions': at})
        self.assertEqual(values(old), [('a', '1'), ('b', '1')])
        self.assertEqual(old['batch']['readTime'], at['readTime'])
        now = self.srv.ok('runQuery', {'query': {'kind': [{'name': 'RT'}]}})
        self.assertEqual(values(now), [('a', '2'), ('c', '2')])
        # a filter on a property, and keys only, at the same moment
        f = self.srv.ok('runQuery', {'query': {
            'kind': [{'name': 'RT'}],
            'filter': {'propertyFilter': {'property': {'name': 'v'}, 'op': 'GREATER_THAN',
                                          'value': {'integerValue': '1'}}}},
            'readOptions': at})
        self.assertEqual(values(f), [])
        got = self.srv.ok('lookup', {'keys': [key('RT', 'a'), key('RT', 'b'),
                                              key('RT', 'c')], 'readOptions': at})
        found = sorted((r['entity']['key']['path'][0]['name'],
                        r['entity']['properties']['v']['integerValue'])
                       for r in got['found'])
        self.assertEqual(found, [('a', '1'), ('b', '1')])
        self.assertEqual([m['entity']['key']['path'][0]['name'] for m in got['missing']], ['c'])

    def test_transactions(self):
        k = key('Txn', 1)
        t = self.srv.ok('beginTransaction', {})['transaction']
        base64.b64decode(t)
        got = self.srv.ok('lookup', {'keys': [k], 'readOptions': {'transaction': t}})
        self.assertEqual(len(got['missing']), 1)
        ents = [{'key': key('Txn', i)} for i in range(1, 101)]  # > 25 groups
        out = self.srv.ok('commit', {'mode': 'TRANSACTIONAL', 'transaction': t,
                                     'mutations': [{'insert': e} for e in ents]})
        self.assertEqual(len(out['mutationResults']), 100)
        # a transaction cannot be used after commit
        self.assertEqual(self.srv.call('commit', {
            'mode': 'TRANSACTIONAL', 'transaction': t, 'mutations': []})[0], 400)
        t2 = self.srv.ok('beginTransaction', {'transactionOptions': {'readWrite': {}}})
        t2 = t2['transaction']
        self.srv.ok('lookup', {'keys': [k], 'readOptions': {'transaction': t2}})
        self.srv.ok('rollback', {'transaction': t2})
        self.assertEqual(self.srv.call('commit', {
            'mode': 'TRANSACTIONAL', 'transaction': t2, 'mutations': []})[0], 400)
        q = self.srv.ok('runQuery', {'query': {'kind': [{'name': 'Txn'}]},
                                     'readOptions': {'newTransaction': {}}})
        self.assertTrue(q['transaction'])
        self.assertEqual(len(q['batch']['entityResults']), 100)
        self.assertError(self.srv.call('commit', {'mode': 'TRANSACTIONAL',
                                                  'mutations': []}), 400,
                         'INVALID_ARGUMENT')
        # in-transaction: insert then update the same key is fine
        t3 = self.srv.ok('beginTransaction', {})['transaction']
        self.srv.ok('commit', {'mode': 'TRANSACTIONAL', 'transaction': t3, 'mutations': [
            {'insert': {'key': key('Txn', 'x')}},
            {'update': {'key': key('Txn', 'x'), 'properties': {'v': {'integerValue': '1'}}}}]})
        got = self.srv.ok('lookup', {'keys': [key('Txn', 'x')]})
        self.assertEqual(got['found'][0]['entity']['properties']['v'], {'integerValue': '1'})

    def test_allocate_and_reserve_ids(self):
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            from google.appengine.datastore import datastore_stub_util as u
        out = self.srv.ok('allocateIds', {'keys': [key('Ids'), key('P', 'x', 'Ids')]})
        a = int(out['keys'][0]['path'][0]['id'])
        self.assertEqual(out['keys'][1]['path'][0], {'kind': 'P', 'name': 'x'})
        counter, space = u.IdToCounter(a)
        self.assertEqual(space, u.SCATTERED)
        reserved = {u.ToScatteredId(c) for c in range(counter + 1, counter + 40)}
        reserved |= {1, 2, 3, 1000}
        self.srv.ok('reserveIds', {'keys': [key('Ids', i) for i in sorted(reserved)]})
        out = self.srv.ok('commit', upserts([{'key': key('Ids')} for _ in range(30)]))
        got = {int(m['key']['path'][0]['id']) for m in out['mutationResults']}
        self.assertEqual(len(got), 30)
        self.assertFalse(got & reserved)
        self.assertNotIn(a, got)
        self.assertError(self.srv.call('allocateIds', {'keys': [key('Ids', 5)]}),
                         400, 'INVALID_ARGUMENT')
        self.assertError(self.srv.call('reserveIds', {'keys': [key('Ids')]}),
                         400, 'INVALID_ARGUMENT')

    # ---------------------------------------------------- protocol errors --
    def test_strict_parsing_and_routing(self):
        res = self.srv.call('lookup', {'keys': [], 'bogusField': 1})
        self.assertError(res, 400, 'INVALID_ARGUMENT', 'bogusField')
        res = self.srv.call('commit', {'mode': 'NON_TRANSACTIONAL', 'mutations': [
            {'upsert': {'key': key('K', 1), 'properties': {'a': {'strValue': 'x'}}}}]})
        self.assertError(res, 400, 'INVALID_ARGUMENT')
        res = self.srv.raw('/v1/projects/p:lookup', b'{not json')
        self.assertError(res, 400, 'INVALID_ARGUMENT')
        self.assertError(self.srv.raw('/v1/projects/p:lookup', None, 'GET'),
                         404, 'NOT_FOUND')
        self.assertError(self.srv.raw('/v1/projects/p:frobnicate', b'{}'),
                         404, 'NOT_FOUND')
        self.assertError(self.srv.raw('/nothing', b'{}'), 404, 'NOT_FOUND')
        self.assertError(self.srv.call('runQuery', {
            'query': {'kind': [{'name': 'K'}]},
            'readOptions': {'readTime': '2020-01-01T00:00:00Z'}}), 400,
            'FAILED_PRECONDITION', 'readTime is older than the versions kept')
        self.assertError(self.srv.call('runQuery', {
            'query': {'kind': [{'name': 'K'}]},
            'readOptions': {'readTime': '2999-01-01T00:00:00Z'}}), 400,
            'INVALID_ARGUMENT', 'readTime must not be in the future')
        self.assertError(self.srv.call('runQuery', {
            'gqlQuery': {'queryString': 'SELECT * FROM K'}}), 501, 'UNIMPLEMENTED')
        self.assertError(self.srv.call('lookup', {'keys': [key('K', 1)],
                                                  'databaseId': 'named'}),
                         400, 'INVALID_ARGUMENT')
        self.assertError(self.srv.call('rollback', {'transaction': 'AAAA'}),
                         400, 'INVALID_ARGUMENT')
        keys = [key('K', i) for i in range(1, 1002)]
        self.assertError(self.srv.call('lookup', {'keys': keys}), 400,
                         'INVALID_ARGUMENT')

    def test_lookup_many_keys_defers(self):
        ents = [{'key': key('Many', i)} for i in range(1, 501)]
        self.srv.ok('commit', upserts(ents))
        got = self.srv.ok('lookup', {'keys': [e['key'] for e in ents]})
        n = len(got.get('found', [])) + len(got.get('deferred', []))
        self.assertEqual(n, 500)
        self.assertTrue(got.get('deferred'))


class SequentialIdsAndPersistenceTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix='kindsnap-devserver-')
        self.storage = os.path.join(self.dir, 'ds.bin')

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def test_persistence_across_kill_and_restart(self):
        args = ('--storage', self.storage, '--auto-id-policy', 'sequential')
        srv = DevServer(*args).start()
        try:
            ents = [{'key': key('Per', 'a'), 'properties': copy.deepcopy(EVERY_VALUE)},
                    {'key': key('Per', 5, ns='n1'),
                     'properties': {'x': {'integerValue': '1'}}}]
            srv.ok('commit', upserts(ents))
            srv.ok('reserveIds', {'keys': [key('Per', 1000)]})
            out = srv.ok('allocateIds', {'keys': [key('Per')]})
            self.assertEqual(out['keys'][0]['path'][0]['id'], '1001')
        finally:
            srv.stop(signal.SIGKILL)
        srv = DevServer(*args).start()
        try:
            got = srv.ok('lookup', {'keys': [e['key'] for e in ents]})
            found = sorted((f['entity'] for f in got['found']),
                           key=lambda e: json.dumps(e['key']))
            self.assertEqual(found, sorted(ents, key=lambda e: json.dumps(e['key'])))
            out = srv.ok('commit', upserts([{'key': key('Per')}]))
            self.assertEqual(out['mutationResults'][0]['key']['path'][0]['id'], '1002')
            q = srv.ok('runQuery', {'query': {'kind': [{'name': '__namespace__'}]}})
            self.assertEqual(len(q['batch']['entityResults']), 2)
        finally:
            srv.stop()

    def test_sequential_ids_do_not_advance_on_explicit_writes(self):
        srv = DevServer('--auto-id-policy', 'sequential').start()
        try:
            srv.ok('commit', upserts([{'key': key('Seq', i)} for i in range(1, 6)]))
            out = srv.ok('commit', upserts([{'key': key('Seq')}]))
            # like production, writing id 1..5 does not reserve them
            self.assertEqual(out['mutationResults'][0]['key']['path'][0]['id'], '1')
            srv.ok('reserveIds', {'keys': [key('Seq', 5)]})
            out = srv.ok('commit', upserts([{'key': key('Seq')}]))
            self.assertEqual(out['mutationResults'][0]['key']['path'][0]['id'], '6')
        finally:
            srv.stop()


def kj(k):
    return json.dumps(k, sort_keys=True)


def lookup_all(srv, keys):
    """lookup in calls of <= 1000 keys, following deferred keys."""
    found, missing = {}, set()
    for i in range(0, len(keys), 1000):
        todo = keys[i:i + 1000]
        while todo:
            got = srv.ok('lookup', {'keys': todo})
            for f in got.get('found', []):
                found[kj(f['entity']['key'])] = f['entity']
            for m in got.get('missing', []):
                missing.add(kj(m['entity']['key']))
            todo = got.get('deferred', [])
    return found, missing


class LogPersistenceTest(unittest.TestCase):
    """--storage: a snapshot plus an fsync'd log of every acknowledged change."""

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix='kindsnap-devserver-')
        self.storage = os.path.join(self.dir, 'ds.bin')

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def check_kept(self, srv, acked):
        found, missing = lookup_all(srv, [json.loads(k) for k in acked])
        for k, e in acked.items():
            if e is None:
                self.assertIn(k, missing)
            else:
                self.assertEqual(found.get(k), e, k)

    def test_kill9_after_acknowledged_commits_keeps_everything(self):
        # a small threshold: the log is also compacted while serving
        args = ('--storage', self.storage, '--auto-id-policy', 'sequential',
                '--log-compact-bytes', '100000')
        acked = {}        # kj(key) -> entity, or None once deleted
        lock = threading.Lock()
        errors = []

        def client(srv, c, rounds):
            try:
                for j in range(rounds):
                    ents = [{'key': key('Kill', c * 100000 + j * 1000 + i),
                             'properties': {
                                 'c': {'integerValue': str(c)},
                                 'v': {'stringValue': 'é✓' * 3 + str(j)},
                                 'pad': {'stringValue': 'x' * 300,
                                         'excludeFromIndexes': True}}}
                            for i in range(1, 121)]
                    srv.ok('commit', upserts(ents))
                    with lock:
                        acked.update((kj(e['key']), e) for e in ents)
                    dels = [e['key'] for e in ents[:7]]
                    srv.ok('commit', {'mode': 'NON_TRANSACTIONAL',
                                      'mutations': [{'delete': k} for k in dels]})
                    with lock:
                        acked.update((kj(k), None) for k in dels)
            except Exception as e:  # reported by the test thread
                errors.append(e)

        def run_clients(srv, rounds):
            threads = [threading.Thread(target=client, args=(srv, c, rounds))
                       for c in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            self.assertEqual(errors, [])

        srv = DevServer(*args).start()
        try:
            run_clients(srv, 5)
            out = srv.ok('commit', upserts([{'key': key('Kill')} for _ in range(3)]))
            auto = [m['key'] for m in out['mutationResults']]
            self.assertEqual([k['path'][0]['id'] for k in auto], ['1', '2', '3'])
            acked.update((kj(k), {'key': k}) for k in auto)
            srv.ok('reserveIds', {'keys': [key('Kill', 500)]})
            t = srv.ok('beginTransaction', {})['transaction']
            tk = key('Kill', 'txn')
            srv.ok('commit', {'mode': 'TRANSACTIONAL', 'transaction': t,
                              'mutations': [{'insert': {'key': tk}}]})
            acked[kj(tk)] = {'key': tk}
            # compacted while serving: the snapshot holds most of it already
            self.assertGreater(os.path.getsize(self.storage), 100000)
        finally:
            srv.stop(signal.SIGKILL)  # right after the last answer
        srv = DevServer(*args).start()
        try:
            self.check_kept(srv, acked)
            out = srv.ok('allocateIds', {'keys': [key('Kill')]})
            self.assertEqual(out['keys'][0]['path'][0]['id'], '501')
            # more after the restart, then another kill -9
            run_clients(srv, 2)
        finally:
            srv.stop(signal.SIGKILL)
        # a torn last frame (a crash while appending, never acknowledged) is
        # ignored
        with open(self.storage + '.log', 'ab') as f:
            f.write(b'\x40\x00\x00\x00\x01\x02\x03\x04torn')
        srv = DevServer(*args).start()
        try:
            self.check_kept(srv, acked)
            q = srv.ok('runQuery', {'query': {'kind': [{'name': 'Kill'}],
                                              'projection': [{'property': {
                                                  'name': '__key__'}}]}})
            self.assertEqual(q['batch']['moreResults'], 'NOT_FINISHED')
            out = srv.ok('allocateIds', {'keys': [key('Kill')]})
            self.assertEqual(out['keys'][0]['path'][0]['id'], '502')
            # the startup compaction left an empty log
            self.assertLess(os.path.getsize(self.storage + '.log'), 100)
        finally:
            srv.stop()

    def test_reset_is_persisted(self):
        args = ('--storage', self.storage)
        srv = DevServer(*args).start()
        try:
            srv.ok('commit', upserts([{'key': key('R', i)} for i in range(1, 11)]))
            self.assertEqual(srv.raw('/reset', b'')[0], 200)
            srv.ok('commit', upserts([{'key': key('R', 'after')}]))
        finally:
            srv.stop(signal.SIGKILL)
        srv = DevServer(*args).start()
        try:
            q = srv.ok('runQuery', {'query': {'kind': [{'name': 'R'}]}})
            self.assertEqual([r['entity']['key'] for r in q['batch']['entityResults']],
                             [key('R', 'after')])
        finally:
            srv.stop()


class CursorScanTest(unittest.TestCase):
    """Key-order scans read only the batch they answer; cursors resume
    strictly after the last returned key, whatever was written meanwhile."""

    @classmethod
    def setUpClass(cls):
        cls.srv = DevServer('--batch-size', '10').start()

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()

    def test_scan_with_writes_between_batches(self):
        srv = self.srv
        keys = [key('S', i) for i in range(1, 1001)] + \
            [key('S', 'n%03d' % i) for i in range(150)] + \
            [key('S', 'ü%d' % i) for i in range(20)] + \
            [key('Par', i, 'S', i) for i in range(1, 80)] + \
            [key('S', 7, 'S', i) for i in range(1, 30)] + \
            [key('S', 2 ** 62 + i) for i in range(5)] + \
            [key('Other', i) for i in range(1, 50)]   # another kind
        for i in range(0, len(keys), 500):
            srv.ok('commit', upserts([{'key': k} for k in keys[i:i + 500]]))
        order = functools.cmp_to_key(
            lambda a, b: (ds_sort_key(a) > ds_sort_key(b)) -
            (ds_sort_key(a) < ds_sort_key(b)))
        live = {kj(k): k for k in keys if k['path'][-1]['kind'] == 'S'}
        query = {'kind': [{'name': 'S'}], 'order': [{'property': {'name': '__key__'}}]}
        got, last, cursor, step = [], None, None, 0
        while True:
            q = dict(query, startCursor=cursor) if cursor else query
            b = srv.ok('runQuery', {'query': q})['batch']
            ks = [r['entity']['key'] for r in b.get('entityResults', [])]
            ahead = sorted((k for k in live.values()
                            if last is None or ds_sort_key(k) > ds_sort_key(last)),
                           key=order)
            self.assertEqual(ks, ahead[:10], 'batch %d' % step)
            got += ks
            if ks:
                last = ks[-1]
            cursor = b['endCursor']
            if b['moreResults'] != 'NOT_FINISHED':
                self.assertEqual(b['moreResults'], 'NO_MORE_RESULTS')
                self.assertEqual(ahead[10:], [])
                break
            # writes between batches: a key right after the last one (a
            # child: must come next), one behind the cursor (must not), the
            # next key deleted (must not come), the last key deleted (the
            # cursor still resumes after it), an update ahead (comes once)
            step += 1
            child = dict(last, path=last['path'] + [{'kind': 'S', 'id': str(step)}])
            behind = key('A', step, 'S', 1)
            muts = [{'upsert': {'key': child}}, {'upsert': {'key': behind}},
                    {'delete': last}]
            rest = [k for k in ahead[10:] if kj(k) != kj(child)]
            if rest:
                muts.append({'delete': rest[0]})
                live.pop(kj(rest[0]))
            if len(rest) > 5:
                muts.append({'update': {'key': rest[5], 'properties': {
                    'step': {'integerValue': str(step)}}}})
            srv.ok('commit', {'mode': 'NON_TRANSACTIONAL', 'mutations': muts})
            live[kj(child)] = child
            live[kj(behind)] = behind
            live.pop(kj(last))
        self.assertGreater(len(got), 1000)
        self.assertGreater(step, 100)
        self.assertEqual(len({kj(k) for k in got}), len(got))
        self.assertEqual(got, sorted(got, key=order))

        # descending, keys only, inside a __key__ range, with a limit
        lo, hi = key('S', 100), key('S', 'n100')
        rng_q = {'kind': [{'name': 'S'}],
                 'projection': [{'property': {'name': '__key__'}}],
                 'order': [{'property': {'name': '__key__'},
                            'direction': 'DESCENDING'}],
                 'filter': {'compositeFilter': {'op': 'AND', 'filters': [
                     {'propertyFilter': {'property': {'name': '__key__'},
                                         'op': 'GREATER_THAN_OR_EQUAL',
                                         'value': {'keyValue': lo}}},
                     {'propertyFilter': {'property': {'name': '__key__'},
                                         'op': 'LESS_THAN',
                                         'value': {'keyValue': hi}}}]}},
                 'limit': 555}
        want = sorted((k for k in live.values()
                       if ds_sort_key(lo) <= ds_sort_key(k) < ds_sort_key(hi)),
                      key=order, reverse=True)[:555]
        got, cursor = [], None
        while True:
            q = dict(rng_q, limit=555 - len(got))
            if cursor:
                q['startCursor'] = cursor
            b = srv.ok('runQuery', {'query': q})['batch']
            got += [r['entity']['key'] for r in b.get('entityResults', [])]
            cursor = b['endCursor']
            if b['moreResults'] != 'NOT_FINISHED':
                break
        self.assertEqual(got, want)
        self.assertEqual(b['moreResults'], 'MORE_RESULTS_AFTER_LIMIT')

    def test_key_order_fast_path_matches_the_stub(self):
        """In-process: random key-order queries answered from the key index
        equal the stub's own full scan and sort."""
        if HERE not in sys.path:
            sys.path.insert(0, HERE)
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            import server
        from google.protobuf import json_format
        rng = random.Random(11)
        ds = server.Datastore(None, batch_size=7)
        orig = server._FileStub._key_order_window
        used = []

        def call(verb, body, fast=True):
            req = server.METHODS[verb][1]()
            json_format.Parse(json.dumps(body), req)
            req.project_id = PROJECT
            server._FileStub._key_order_window = orig if fast else \
                (lambda *a: None)
            try:
                with ds.lock:
                    out = getattr(ds, server.METHODS[verb][0])(PROJECT, req)
            except server.ApiError as e:
                return ('error', e.status, e.message)
            finally:
                server._FileStub._key_order_window = orig
            if verb == 'runQuery':
                out.batch.ClearField('read_time')
            return json_format.MessageToDict(out)

        names = ['a', 'B', 'ab', 'é', 'ｚ', '😀', 'a\x00', 'a\x00b', 'zz']
        kinds = ['K', 'K\x00', 'KK', 'Ké']

        def rand_key(ns):
            path = []
            for _ in range(rng.choice([1, 1, 2, 3])):
                path += [rng.choice(kinds), rng.choice(
                    [rng.randrange(1, 40), 2 ** 63 - 1, rng.choice(names)])]
            return key(*path, ns=ns)

        all_keys = []
        for ns in (None, 'n1'):
            for _ in range(30):
                batch = {kj(k): k for k in (rand_key(ns) for _ in range(10))}
                call('commit', upserts([{'key': k} for k in batch.values()]))
                all_keys += batch.values()
        dels = {kj(k): k for k in rng.sample(all_keys, 40)}
        call('commit', {'mode': 'NON_TRANSACTIONAL',
                        'mutations': [{'delete': k} for k in dels.values()]})
        ops = ['LESS_THAN', 'LESS_THAN_OR_EQUAL', 'GREATER_THAN',
               'GREATER_THAN_OR_EQUAL', 'EQUAL']
        cursors = {None: [], 'n1': []}
        for _ in range(600):
            ns = rng.choice([None, 'n1'])
            q = {'kind': [{'name': rng.choice(kinds)}]}
            if rng.random() < .7:
                q['order'] = [{'property': {'name': '__key__'}, 'direction':
                               rng.choice(['ASCENDING', 'DESCENDING'])}]
            fl = []
            for _ in range(rng.choice([0, 0, 1, 2])):
                fk = copy.deepcopy(rng.choice(all_keys))
                fk['partitionId'] = key('K', 1, ns=ns)['partitionId']
                fl.append({'propertyFilter': {'property': {'name': '__key__'},
                                              'op': rng.choice(ops),
                                              'value': {'keyValue': fk}}})
            if len(fl) == 1:
                q['filter'] = fl[0]
            elif fl:
                q['filter'] = {'compositeFilter': {'op': 'AND', 'filters': fl}}
            if rng.random() < .3:
                q['limit'] = rng.randrange(0, 20)
            if rng.random() < .3:
                q['offset'] = rng.choice([1, 3, 10, 1005])
            if rng.random() < .3:
                q['projection'] = [{'property': {'name': '__key__'}}]
            if cursors[ns] and rng.random() < .6:
                q['startCursor'] = rng.choice(cursors[ns])
            if cursors[ns] and rng.random() < .2:
                q['endCursor'] = rng.choice(cursors[ns])
            body = {'query': q, 'partitionId': key('K', 1, ns=ns)['partitionId']}
            fast = call('runQuery', body)
            self.assertEqual(fast, call('runQuery', body, fast=False), body)
            if isinstance(fast, dict):
                used.append(1)
                cursors[ns] += [r['cursor'] for r in
                                fast['batch'].get('entityResults', [])[:2]]
        self.assertGreater(len(used), 400)


class FaultInjectionTest(unittest.TestCase):
    def test_fail_rate_one(self):
        srv = DevServer('--fail-rate', '1.0', '--seed', '7', '--retry-after', '1',
                        '--latency-ms', '5').start()
        try:
            statuses = set()
            for verb, body in [('commit', upserts([{'key': key('F', 1)}])),
                               ('lookup', {'keys': [key('F', 1)]}),
                               ('runQuery', {'query': {'kind': [{'name': 'F'}]}})] * 4:
                code, out, headers = srv.raw('/v1/projects/p:' + verb,
                                             json.dumps(body).encode())
                self.assertIn(code, (503, 409))
                statuses.add(out['error']['status'])
                if code == 503:
                    self.assertEqual(out['error']['status'], 'UNAVAILABLE')
                    self.assertEqual(headers.get('Retry-After'), '1')
                else:
                    self.assertEqual(out['error']['status'], 'ABORTED')
            self.assertEqual(statuses, {'UNAVAILABLE', 'ABORTED'})
            srv.ok('allocateIds', {'keys': [key('F')]})  # not faulty
        finally:
            srv.stop()

    def test_fail_after_apply(self):
        srv = DevServer('--fail-after-apply-rate', '1.0').start()
        try:
            code, out = srv.call('commit', upserts([{'key': key('F', 2)}]))
            self.assertEqual(code, 503)
            got = srv.ok('lookup', {'keys': [key('F', 2)]})
            self.assertEqual(len(got['found']), 1)
        finally:
            srv.stop()

    def test_small_batches(self):
        srv = DevServer('--batch-size', '7').start()
        try:
            srv.ok('commit', upserts([{'key': key('B', i)} for i in range(1, 21)]))
            b = srv.ok('runQuery', {'query': {'kind': [{'name': 'B'}]}})['batch']
            self.assertEqual(len(b['entityResults']), 7)
            self.assertEqual(b['moreResults'], 'NOT_FINISHED')
        finally:
            srv.stop()


if __name__ == '__main__':
    unittest.main()


class ScatterAndStatsTest(unittest.TestCase):
    """``__scatter__`` ordering (the stub's: a stable pseudo-random order
    of about half the entities), ``--no-scatter`` (the emulator refuses
    it), and the read counters of ``POST /stats``."""

    def test_scatter_order_is_stable_and_counted(self):
        srv = DevServer().start()
        try:
            srv.ok('commit', upserts([{'key': key('S', i)} for i in range(1, 401)]))
            srv.raw('/stats/reset', b'')
            q = {'query': {'kind': [{'name': 'S'}],
                           'projection': [{'property': {'name': '__key__'}}],
                           'order': [{'property': {'name': '__scatter__'}}],
                           'limit': 50}}
            a = [r['entity']['key'] for r in srv.ok('runQuery', q)['batch']['entityResults']]
            b = [r['entity']['key'] for r in srv.ok('runQuery', q)['batch']['entityResults']]
            self.assertEqual(len(a), 50)
            self.assertEqual(a, b)
            self.assertNotEqual(a, sorted(a, key=ds_sort_key))
            srv.ok('runQuery', {'query': {'kind': [{'name': 'S'}], 'limit': 30}})
            srv.ok('lookup', {'keys': [key('S', 1), key('S', 9999)]})
            code, stats, _ = srv.raw('/stats', b'')
            self.assertEqual(code, 200)
            self.assertEqual(stats['kinds']['S'],
                             {'entity_reads': 2 + 30 + 2, 'small_ops': 100,
                              'lookups': 2})
            self.assertEqual(stats['requests'], {'runQuery': 3, 'lookup': 1})
            self.assertEqual(stats['total_requests'], 4)
            self.assertGreaterEqual(stats['max_per_second'], 1)
        finally:
            srv.stop()

    def test_no_read_time_refuses(self):
        srv = DevServer('--no-read-time').start()
        try:
            t = srv.call('runQuery', {'query': {'kind': [{'name': 'S'}]}})[1]
            code, out = srv.call('runQuery', {
                'query': {'kind': [{'name': 'S'}]},
                'readOptions': {'readTime': t['batch']['readTime']}})
            self.assertEqual(code, 400)
            self.assertIn('readTime', out['error']['message'])
        finally:
            srv.stop()

    def test_no_scatter_refuses(self):
        srv = DevServer('--no-scatter').start()
        try:
            code, out = srv.call('runQuery', {'query': {
                'kind': [{'name': 'S'}],
                'order': [{'property': {'name': '__scatter__'}}]}})
            self.assertEqual(code, 400)
            self.assertIn('__scatter__', out['error']['message'])
        finally:
            srv.stop()
