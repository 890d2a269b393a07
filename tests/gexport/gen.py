"""Writes Google managed export folders for kindsnap's tests, with Google's
own serializer: App Engine's ``EntityProto`` (``appengine-python-standard``)
filled by App Engine's v1 -> v3 converter (``datastore_pbs``), plus a small
LevelDB log writer. Beside each export it writes ``*.expected.jsonl``: the
same entities as Google's v3 -> v1 converter shows them (the Cloud Datastore
v1 API's view), one Datastore v1 JSON entity per line.

    gen.py OUT            writes OUT/series/DAY1, OUT/series/DAY2,
                          OUT/domain/…, OUT/filtered/…, OUT/corrupt/…
                          and OUT/manifest.json saying what is where

Runs with the dev server's virtualenv (tests/gexport/setup.sh prints it).
"""

import base64
import json
import os
import shutil
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', 'devserver'))

import googledatastore_shim  # noqa: E402

gd = googledatastore_shim.install()

from google.protobuf import json_format  # noqa: E402
from google.appengine.datastore import datastore_pbs  # noqa: E402
from google.appengine.datastore import entity_bytes_pb2 as entity_pb2  # noqa: E402

BLOCK = 32768
HEADER = 7


# ------------------------------------------------------------- LevelDB log

def _crc_table():
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_TABLE = _crc_table()


def crc32c(data, crc=0):
    crc ^= 0xFFFFFFFF
    for b in data:
        crc = _TABLE[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def masked_crc(kind, payload):
    c = crc32c(payload, crc32c(bytes([kind])))
    return ((((c >> 15) | (c << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF


class LogWriter:
    """LevelDB log format: 32 KiB blocks, FULL/FIRST/MIDDLE/LAST."""

    def __init__(self, f):
        self.f = f
        self.in_block = 0

    def record(self, data):
        first = True
        while True:
            left = BLOCK - self.in_block
            if left < HEADER:
                self.f.write(b'\0' * left)
                self.in_block = 0
                continue
            take = min(len(data), left - HEADER)
            last = take == len(data)
            kind = {(True, True): 1, (True, False): 2,
                    (False, False): 3, (False, True): 4}[(first, last)]
            payload = data[:take]
            self.f.write(struct.pack('<IHB', masked_crc(kind, payload), take, kind))
            self.f.write(payload)
            self.in_block += HEADER + take
            data = data[take:]
            first = False
            if last:
                return


def write_log(path, records):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'wb') as f:
        w = LogWriter(f)
        for r in records:
            w.record(r)


# ------------------------------------------------------- tiny proto writer

def _varint(v):
    v &= (1 << 64) - 1
    out = bytearray()
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def _field_bytes(n, b):
    return _varint(n << 3 | 2) + _varint(len(b)) + b


def _field_int(n, v):
    return _varint(n << 3) + _varint(v)


# --------------------------------------------------------------- entities

class Resolver(datastore_pbs.IdResolver):
    """project <-> app id with a partition prefix, as production has."""

    def __init__(self, prefix):
        super().__init__(())
        self.prefix = prefix

    def resolve_app_id(self, project_id):
        return self.prefix + project_id


def v1(entity_json):
    e = gd.Entity()
    json_format.ParseDict(entity_json, e)
    return e


def key(project, ns, *path):
    k = {'partitionId': {'projectId': project}, 'path': []}
    if ns:
        k['partitionId']['namespaceId'] = ns
    for kind, ident in zip(path[::2], path[1::2]):
        el = {'kind': kind}
        el['id' if isinstance(ident, int) else 'name'] = str(ident) if isinstance(ident, int) else ident
        k['path'].append(el)
    return k


def every_type(project, ns, n, day):
    """One entity holding every v1 value type."""
    b64 = lambda b: base64.b64encode(b).decode()  # noqa: E731
    return {
        'key': key(project, ns, 'Every', n),
        'properties': {
            'null': {'nullValue': None},
            'bool': {'booleanValue': n % 2 == 0},
            'int': {'integerValue': str(-(2 ** 62) + n * day)},
            'double': {'doubleValue': 1.5 * n},
            'inf': {'doubleValue': 'Infinity', 'excludeFromIndexes': True},
            'when': {'timestampValue': '2026-11-2%dT03:04:05.123456Z' % day},
            'text': {'stringValue': 'héllo wörld %d ✓' % n},
            'long': {'stringValue': 'x' * 2000, 'excludeFromIndexes': True,
                     'meaning': 15},
            'short': {'blobValue': b64(b'\x00\xff' * 10)},
            'blob': {'blobValue': b64(bytes(range(256)) * 4),
                     'excludeFromIndexes': True},
            'ref': {'keyValue': key(project, 'shop', 'User', 'alice', 'Order', 7)},
            'geo': {'geoPointValue': {'latitude': 48.85, 'longitude': 2.35}},
            'list': {'arrayValue': {'values': [
                {'integerValue': '1'}, {'stringValue': 'two'},
                {'stringValue': 'unindexed', 'excludeFromIndexes': True},
                {'nullValue': None}]}},
            'empty': {'arrayValue': {}},
            'embedded': {'entityValue': {
                'key': key(project, ns, 'Inner', 'i%d' % n),
                'properties': {
                    'a': {'integerValue': '5'},
                    'deeper': {'entityValue': {'properties': {
                        'b': {'stringValue': 'deep', 'excludeFromIndexes': True}}},
                        'excludeFromIndexes': True}}},
                'excludeFromIndexes': True},
            'anon': {'entityValue': {'properties': {'c': {'booleanValue': True}}},
                     'excludeFromIndexes': True},
            'user': {'meaning': 20, 'excludeFromIndexes': True, 'entityValue': {
                'properties': {
                    'email': {'stringValue': 'ann@example.com', 'excludeFromIndexes': True},
                    'auth_domain': {'stringValue': 'gmail.com', 'excludeFromIndexes': True},
                    'user_id': {'stringValue': '1234567890', 'excludeFromIndexes': True},
                    'internal_id': {'integerValue': '42', 'excludeFromIndexes': True},
                }}},
        },
    }


def legacy_extras(v3, app):
    """Properties only legacy (v3) data has, written straight into the
    EntityProto: what App Engine apps stored before the v1 API."""
    P = entity_pb2.Property

    def prop(name, indexed=True, meaning=None, multiple=False):
        p = (v3.property if indexed else v3.raw_property).add()
        p.name = name.encode()
        p.multiple = multiple
        if meaning is not None:
            p.meaning = meaning
        return p

    prop('rating', meaning=P.GD_RATING).value.int64Value = 87
    prop('link', meaning=P.ATOM_LINK).value.stringValue = b'https://example.com/'
    prop('far_future', meaning=P.GD_WHEN).value.int64Value = 2 ** 62
    prop('latin1').value.stringValue = b'caf\xe9'
    pt = prop('plain_point').value.pointvalue
    pt.x, pt.y = 1.25, -3.5
    u = prop('owner', indexed=False).value.uservalue
    u.email, u.auth_domain, u.nickname, u.gaiaid = 'bob@example.com', 'example.com', 'bob', 0
    u.federated_identity = 'https://id.example.com/bob'
    z = prop('packed', indexed=False, meaning=P.BLOB)
    z.meaning_uri = 'ZLIB'
    z.value.stringValue = b'x\x9c\xcbH\xcd\xc9\xc9\x07\x00\x06,\x02\x15'
    prop('nothing', indexed=False, meaning=P.EMPTY_LIST).value.SetInParent()
    # An array whose elements differ in indexing: indexed ones come first
    # in the v1 API's view.
    prop('mixed', indexed=False, multiple=True).value.stringValue = b'raw-1'
    prop('mixed', multiple=True).value.int64Value = 2
    prop('mixed', indexed=False, multiple=True).value.stringValue = b'raw-3'
    # Two values set at once: the first by the converter's order wins, and
    # the meaning goes.
    two = prop('two_values', meaning=P.TEXT).value
    two.booleanValue = True
    two.stringValue = b'ignored'
    r = prop('legacy_ref').value.referencevalue
    r.app = app
    r.name_space = 'shop'
    el = r.pathelement.add()
    el.type, el.name = 'User', 'carol'


def complete(v3):
    """The converter leaves an empty list's (required) value unset;
    production writes it empty."""
    for p in list(v3.property) + list(v3.raw_property):
        p.value.SetInParent()
    return v3


def to_v3(entity_json, ec):
    v3 = entity_pb2.EntityProto()
    ec.v1_to_v3_entity(v1(entity_json), v3)
    return complete(v3)


def v1_json(v3, ec):
    """How the v1 API shows a v3 entity: Google's converter, as JSON."""
    e = gd.Entity()
    ec.v3_to_v1_entity(v3, e)
    return json.dumps(json_format.MessageToDict(e), sort_keys=True, ensure_ascii=False)


def entities(project, prefix, day, count):
    """(v3 EntityProto) of one day's data set."""
    ec = datastore_pbs.get_entity_converter(Resolver(prefix))
    out = []
    for n in range(1, count + 1):
        for ns in ('', 'shop'):
            if day == 2 and n % 5 == 0 and ns == '':
                continue  # deleted on day 2
            out.append(to_v3(every_type(project, ns, n, day if n % 3 == 0 else 1), ec))
    # Legacy-only properties on an entity of their own: the v1 API shows
    # them but would refuse some of them on a write (an unindexed empty
    # list), so the dev server cannot hold this one.
    legacy = to_v3({'key': key(project, '', 'Legacy', 1), 'properties': {}}, ec)
    legacy_extras(legacy, prefix + project)
    out.append(legacy)
    # Ancestors: orders under users, in the namespace `shop`.
    for u in ('alice', 'bob'):
        out.append(to_v3({'key': key(project, 'shop', 'User', u),
                          'properties': {'name': {'stringValue': u}}}, ec))
        for o in range(1, 4):
            out.append(to_v3({'key': key(project, 'shop', 'User', u, 'Order', o),
                              'properties': {'total': {'integerValue': str(o * 100 + day)}}}, ec))
    # A record larger than a block (spans several).
    out.append(to_v3({'key': key(project, '', 'Big', 'one'),
                      'properties': {'data': {'blobValue': base64.b64encode(
                          bytes((i * 7) % 251 for i in range(150000))).decode(),
                          'excludeFromIndexes': True}}}, ec))
    return out, ec


# ------------------------------------------------------------------ layout

def overall_message(name, folder_files):
    info = _field_bytes(1, name.encode()) + _field_int(2, 1) + _field_int(3, 2)
    msg = _field_bytes(1, info)
    for kind, path in folder_files:
        msg += _field_bytes(2, _field_bytes(1, kind.encode()) + _field_bytes(2, path.encode()))
    return msg


def write_export(root, name, folders, files_per_folder=3):
    """folders: {(ns_dir, kind_dir): [v3 entities]}. Writes root/name/."""
    base = os.path.join(root, name)
    shutil.rmtree(base, ignore_errors=True)
    metas = []
    for (ns_dir, kind_dir), ents in sorted(folders.items()):
        sub = os.path.join(base, ns_dir, kind_dir)
        # Shards of unequal size, and one empty shard at the end.
        shards = [[] for _ in range(files_per_folder)]
        for i, e in enumerate(ents):
            shards[i % max(files_per_folder - 1, 1)].append(e.SerializeToString())
        names = []
        for i, recs in enumerate(shards):
            write_log(os.path.join(sub, 'output-%d' % i), recs)
            names.append('output-%d' % i)
        kind = kind_dir[len('kind_'):] if kind_dir.startswith('kind_') else '__all__'
        meta_name = '%s_%s.export_metadata' % (ns_dir, kind_dir)
        msg = _field_bytes(1, kind.encode()) + b''.join(_field_bytes(2, n.encode()) for n in names)
        write_log(os.path.join(sub, meta_name), [b'1', msg])
        metas.append((kind, '%s/%s/%s' % (ns_dir, kind_dir, meta_name)))
    write_log(os.path.join(base, name + '.overall_export_metadata'),
              [b'1', overall_message(name, metas)])
    return base


def write_expected(path, v3s, ec):
    with open(path, 'w', encoding='utf-8') as f:
        for v3 in v3s:
            f.write(v1_json(v3, ec) + '\n')


def main(out):
    os.makedirs(out, exist_ok=True)
    manifest = {}
    days = {}
    for day in (1, 2):
        name = '2026-11-2%dT03:00:00_%d' % (day - 1, 1000 + day)
        v3s, ec = entities('proj', 's~', day, 40)
        base = write_export(os.path.join(out, 'series'), name,
                            {('all_namespaces', 'all_kinds'): v3s})
        write_expected(os.path.join(out, 'day%d.expected.jsonl' % day), v3s, ec)
        days[day] = (base, v3s)
        manifest['day%d' % day] = base
    # A domain-scoped project with an EU partition prefix.
    v3s, ec = entities('example.com:proj', 'e~', 1, 3)
    manifest['domain'] = write_export(os.path.join(out, 'domain'), '2026-11-20T03:00:00_3',
                                      {('all_namespaces', 'all_kinds'): v3s})
    write_expected(os.path.join(out, 'domain.expected.jsonl'), v3s, ec)
    # Filtered by kind and namespace: one folder per (namespace, kind).
    v3s, ec = days[1][1], datastore_pbs.get_entity_converter(Resolver('s~'))
    folders = {}
    for v3 in v3s:
        kind = v3.key.path.element[-1].type.decode() if isinstance(
            v3.key.path.element[-1].type, bytes) else v3.key.path.element[-1].type
        ns = v3.key.name_space
        if kind not in ('Every', 'Order'):
            continue
        ns_dir = 'namespace_%s' % ns if ns else 'default_namespace'
        folders.setdefault((ns_dir, 'kind_' + kind), []).append(v3)
    manifest['filtered'] = write_export(os.path.join(out, 'filtered'), '2026-11-20T03:00:00_4',
                                        folders, files_per_folder=2)
    write_expected(os.path.join(out, 'filtered.expected.jsonl'),
                   [v for fs in sorted(folders) for v in folders[fs]], ec)
    # A flipped byte inside a record of day 1's second data file.
    corrupt = os.path.join(out, 'corrupt', os.path.basename(days[1][0]))
    shutil.rmtree(corrupt, ignore_errors=True)
    shutil.copytree(days[1][0], corrupt)
    victim = os.path.join(corrupt, 'all_namespaces', 'all_kinds', 'output-1')
    with open(victim, 'r+b') as f:
        data = bytearray(f.read())
        # The second record: skip the first record's header and payload.
        first_len = struct.unpack('<H', data[4:6])[0]
        offset = HEADER + first_len
        data[offset + HEADER + 20] ^= 0x40
        f.seek(0)
        f.write(data)
    manifest['corrupt'] = corrupt
    manifest['corrupt_file'] = victim
    manifest['corrupt_offset'] = offset
    with open(os.path.join(out, 'manifest.json'), 'w') as f:
        json.dump(manifest, f, indent=1)


if __name__ == '__main__':
    main(sys.argv[1])
