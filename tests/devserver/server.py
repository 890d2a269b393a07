#!/usr/bin/env python3
"""kindsnap dev server: Google's App Engine datastore stub behind the Cloud
Datastore v1 REST API.

    python server.py --port 0 [--storage FILE] [--fail-rate P] ...

Prints one line ``LISTENING http://127.0.0.1:PORT`` on stdout once it accepts
connections.  See README.md beside this file for what is faithful and what is
not.
"""

import argparse
import bisect
import collections
import copy
import http.server
import json
import os
import pickle
import random
import re
import signal
import socket
import struct
import sys
import threading
import time
import traceback
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import googledatastore_shim  # noqa: E402

gd = googledatastore_shim.install()

from google.protobuf import json_format  # noqa: E402
from google.appengine.api import apiproxy_stub_map  # noqa: E402
from google.appengine.api import datastore_file_stub  # noqa: E402
from google.appengine.api import datastore_types  # noqa: E402
from google.appengine.datastore import datastore_pb  # noqa: E402
from google.appengine.datastore import datastore_pbs  # noqa: E402
from google.appengine.datastore import datastore_stub_util  # noqa: E402
from google.appengine.datastore import entity_bytes_pb2 as entity_pb2  # noqa: E402
from google.appengine.runtime import apiproxy_errors  # noqa: E402

# Firestore in Datastore mode has no 25-entity-group limit per transaction.
datastore_stub_util._MAX_EG_PER_TXN = 1 << 30

STUB_APP_ID = 'kindsnap-devserver'

# ---------------------------------------------------------------- limits ----
MAX_REQUEST_BYTES = 10 * 1024 * 1024          # 10 MiB
MAX_ENTITY_BYTES = 1048572                    # 1 MiB - 4
MAX_INDEXED_BYTES = 1500
MAX_UNINDEXED_BYTES = 1048487
MAX_LOOKUP_KEYS = 1000
HISTORY_SECONDS = 3600  # readTime reaches this far back
MAX_KEY_PATH = 100
MAX_STUB_BATCH = datastore_stub_util._MAXIMUM_RESULTS  # 300

# Hidden, unindexed property holding the original v1 entity when the v3
# representation cannot hold it exactly (see README.md).
HIDDEN_PROP = '__kindsnap_v1'
HIDDEN_CHUNK = 512 * 1024

_RESERVED_RE = re.compile(r'^__.*__$')
_NAMESPACE_RE = re.compile(r'^[0-9A-Za-z._-]{0,100}$')

HTTP_OF = {
    'INVALID_ARGUMENT': 400, 'FAILED_PRECONDITION': 400, 'OUT_OF_RANGE': 400,
    'UNAUTHENTICATED': 401, 'PERMISSION_DENIED': 403, 'NOT_FOUND': 404,
    'ALREADY_EXISTS': 409, 'ABORTED': 409, 'RESOURCE_EXHAUSTED': 429,
    'CANCELLED': 499, 'INTERNAL': 500, 'UNKNOWN': 500, 'DATA_LOSS': 500,
    'UNIMPLEMENTED': 501, 'UNAVAILABLE': 503, 'DEADLINE_EXCEEDED': 504,
}

# v3 stub error codes -> google.rpc status names
_V3_STATUS = {
    1: 'INVALID_ARGUMENT', 2: 'ABORTED', 3: 'INTERNAL', 4: 'FAILED_PRECONDITION',
    5: 'DEADLINE_EXCEEDED', 6: 'PERMISSION_DENIED', 7: 'INTERNAL',
    8: 'UNAVAILABLE', 9: 'UNAVAILABLE', 10: 'UNAVAILABLE',
    11: 'INVALID_ARGUMENT', 12: 'RESOURCE_EXHAUSTED', 13: 'NOT_FOUND',
    14: 'ALREADY_EXISTS', 15: 'FAILED_PRECONDITION', 16: 'UNAUTHENTICATED',
    17: 'ABORTED', 18: 'FAILED_PRECONDITION',
}

MSG_UNAVAILABLE = 'The service is currently unavailable.'
MSG_ABORTED = 'too much contention on these datastore entities. please try again.'


class ApiError(Exception):
    def __init__(self, status, message, headers=None):
        Exception.__init__(self, message)
        self.status = status
        self.message = message
        self.headers = headers or {}

    @property
    def http(self):
        return HTTP_OF.get(self.status, 500)


def bad(message):
    return ApiError('INVALID_ARGUMENT', message)


# ------------------------------------------------------------ the store ----
_ID_OFFSET = 1 << 63


def _esc(text):
    """UTF-8 bytes that sort like the string and end unambiguously."""
    return text.encode('utf-8').replace(b'\x00', b'\x00\xff') + b'\x00\x01'


def _order_key(elements):
    """Bytes that sort like the stub's key order (``ReferenceToKeyValue``
    compared with ``cmp_compat.cmp``) for a path within one app/namespace:
    element by element, kind (as text), ids (signed, numeric) before names
    (as text), a path before its descendants.  ``elements``: the
    ``path.element`` of a Reference or the ``pathelement`` of a
    ReferenceValue."""
    out = []
    for el in elements:
        out.append(_esc(el.type))
        if el.HasField('name'):
            out.append(b'\x02')
            out.append(_esc(el.name))
        else:
            out.append(b'\x01')
            out.append((el.id + _ID_OFFSET).to_bytes(8, 'big'))
    return b''.join(out)


class SortedKeys(object):
    """A sorted set of bytes kept in blocks: add/discard cost O(sqrt n)
    instead of a flat list's O(n) shifts.  Positions are (block, index),
    normalized so that index < len(block), or (len(blocks), 0) at the end;
    they compare as tuples."""

    LOAD = 1000

    def __init__(self):
        self._blocks = []   # non-empty sorted lists; concatenated: sorted
        self._maxes = []    # the last key of each block

    def __len__(self):
        return sum(len(b) for b in self._blocks)

    def add(self, k):
        """Adds k (the caller knows it is not there)."""
        if not self._blocks:
            self._blocks.append([k])
            self._maxes.append(k)
            return
        i = bisect.bisect_left(self._maxes, k)
        if i == len(self._blocks):
            i -= 1
            self._blocks[i].append(k)
            self._maxes[i] = k
        else:
            bisect.insort(self._blocks[i], k)
        b = self._blocks[i]
        if len(b) > 2 * self.LOAD:
            self._blocks[i:i + 1] = [b[:self.LOAD], b[self.LOAD:]]
            self._maxes[i:i + 1] = [b[self.LOAD - 1], b[-1]]

    def discard(self, k):
        i = bisect.bisect_left(self._maxes, k)
        if i == len(self._blocks):
            return
        b = self._blocks[i]
        j = bisect.bisect_left(b, k)
        if b[j] != k:
            return
        del b[j]
        if not b:
            del self._blocks[i]
            del self._maxes[i]
        elif j == len(b):
            self._maxes[i] = b[-1]

    def end(self):
        return (len(self._blocks), 0)

    def position(self, k, right=False):
        """The position of bisect_left (bisect_right if right) of k."""
        find = bisect.bisect_right if right else bisect.bisect_left
        i = find(self._maxes, k)
        if i == len(self._maxes):
            return (i, 0)
        return (i, find(self._blocks[i], k))  # < len: maxes[i] >= / > k

    def forward(self, lo, hi, n):
        """Up to n keys from position lo up to (not including) hi."""
        out = []
        i, j = lo
        while (i, j) < hi and len(out) < n:
            b = self._blocks[i]
            stop = len(b) if i < hi[0] else hi[1]
            out.extend(b[j:min(stop, j + n - len(out))])
            i, j = i + 1, 0
        return out

    def backward(self, lo, hi, n):
        """Up to n keys before position hi down to lo, last first."""
        out = []
        if hi <= lo:
            return out
        i, j = hi
        while len(out) < n:
            if j == 0:
                i -= 1
                if i < lo[0]:
                    break
                j = len(self._blocks[i])
            start = lo[1] if i == lo[0] else 0
            if j <= start:
                break
            s = max(start, j - (n - len(out)))
            out.extend(reversed(self._blocks[i][s:j]))
            j = s if s > start else 0
            if s == start and i == lo[0]:
                break
        return out


class _KindIndex(object):
    """One kind of one app/namespace: its keys in key order."""

    __slots__ = ('keys', 'stored')

    def __init__(self):
        self.keys = SortedKeys()
        self.stored = {}    # order key -> the stub's _StoredEntity


# Log record types
_LOG_PUT, _LOG_DELETE, _LOG_CLEAR, _LOG_META = b'P', b'D', b'C', b'M'
_LOG_MAGIC = b'kindsnap-devserver-log 1\n'
_FRAME = struct.Struct('<II')       # payload length, crc32(payload)
_REC_LEN = struct.Struct('<I')
_META = struct.Struct('<qqq')       # sequential, scattered id counters; commit ts


class _LiveTxn(datastore_stub_util.LiveTxn):
    """The stub's transaction, with its contention check made linear.

    Each time a transaction first reads an entity group, the stub checks that
    none of the groups it read before has been written since (locking and
    sorting them all): O(n^2) for a transaction over n groups.  Groups only
    change when a transaction commits, and every commit moves the commit
    timestamp, so the check is skipped (it would pass again) while the
    timestamp is the one of the last check that passed."""

    _checked_at = None

    def _GrabSnapshot(self, reference):
        tracker = self._GetTracker(reference)
        check_contention = tracker._snapshot is None
        snapshot = tracker._GrabSnapshot(self._txn_manager)
        now = self._txn_manager._commit_timestamp
        if check_contention and self._checked_at != now:
            candidates = [other for other in self._entity_groups.values()
                          if other._snapshot is not None and other != tracker]
            meta_data_list = [other._meta_data for other in candidates]
            self._txn_manager._AcquireWriteLocks(meta_data_list)
            try:
                for other in candidates:
                    if other._meta_data._log_pos != other._read_pos:
                        self._state = self.FAILED
                        raise apiproxy_errors.ApplicationError(
                            datastore_pb.Error.CONCURRENT_TRANSACTION,
                            'Concurrency exception.')
            finally:
                self._txn_manager._ReleaseWriteLocks(meta_data_list)
            self._checked_at = now
        return snapshot


class _FileStub(datastore_file_stub.DatastoreFileStub):
    """The App Engine file stub with

    * a key-ordered index per kind, so that a query by key order (the kind
      scan, optionally with ``__key__`` range filters and cursors) reads only
      the batch it answers instead of sorting the whole kind (see
      ``_GetQueryCursor``);
    * every stored/deleted record kept in ``pending`` for the server's log
      (see ``Datastore.flush``) instead of rewriting the whole file."""

    def __init__(self, storage, auto_id_policy):
        self._kinds = {}        # (app_ns, kind) -> _KindIndex
        self.pending = []       # log records since the last flush
        self.logging = False    # off while loading
        # readTime: what each commit replaced, newest last, as
        # (commit time in us, app_kind, order key, previous _StoredEntity or
        # None); kept HISTORY_SECONDS, like Datastore's one hour of versions
        self.history = collections.deque()
        self.unstamped = []     # this commit's (app_kind, order key, previous)
        self.as_of = None       # readTime (us) of the read in progress
        self.versioning = False  # on once loaded
        datastore_file_stub.DatastoreFileStub.__init__(
            self, STUB_APP_ID, storage, trusted=True, use_atexit=False,
            save_changes=bool(storage), require_indexes=False,
            # strongly consistent, applied at commit, like Firestore in
            # Datastore mode
            consistency_policy=datastore_stub_util.MasterSlaveConsistencyPolicy(),
            auto_id_policy=auto_id_policy)
        # the 1 MiB per-call cap of the App Engine runtime does not apply here
        self._APIProxyStub__max_request_size = 1 << 40

    def Write(self):
        """Called by the stub after every commit: the server's log persists
        instead (Datastore.flush)."""

    # -- transactions: linear in the number of entity groups -----------------
    def _BeginTransaction(self, app, allow_multiple_eg,
                          mode=datastore_pb.BeginTransactionRequest.UNKNOWN):
        return _LiveTxn(self, app, allow_multiple_eg, mode)

    # the stub sorts with EntityGroupMetaData.__lt__ (id order, in Python)
    def _AcquireWriteLocks(self, meta_data_list):
        for meta_data in sorted(meta_data_list, key=id):
            meta_data._write_lock.acquire()

    def _ReleaseWriteLocks(self, meta_data_list):
        for meta_data in sorted(meta_data_list, key=id):
            meta_data._write_lock.release()

    # -- hooks: every stored and deleted entity passes here ------------------
    def _StoreRecord(self, record, insert=False):
        key = record.entity.key
        app_kind, _, k = self._GetEntityLocation(key)
        datastore_file_stub.DatastoreFileStub._StoreRecord(self, record, insert)
        idx = self._kinds.get(app_kind)
        ok = _order_key(key.path.element)
        if self.versioning:
            self.unstamped.append((app_kind, ok, idx.stored.get(ok)
                                   if idx is not None else None))
        stored = self._GetAllEntities()[app_kind][k]
        if idx is None:
            idx = self._kinds[app_kind] = _KindIndex()
        if ok not in idx.stored:
            idx.keys.add(ok)
        idx.stored[ok] = stored
        if self.logging:
            self.pending.append((_LOG_PUT, stored.encoded_protobuf))

    def _Delete(self, key):
        app_kind, _, k = self._GetEntityLocation(key)
        kind_dict = self._GetAllEntities().get(app_kind)
        if kind_dict is None or k not in kind_dict:
            return  # (the stub would leave an empty kind behind)
        idx = self._kinds.get(app_kind)
        ok = _order_key(key.path.element)
        if self.versioning and idx is not None:
            self.unstamped.append((app_kind, ok, idx.stored.get(ok)))
        datastore_file_stub.DatastoreFileStub._Delete(self, key)
        if idx is not None and idx.stored.pop(ok, None) is not None:
            idx.keys.discard(ok)
            if not idx.stored:
                del self._kinds[app_kind]
        if self.logging:
            self.pending.append((_LOG_DELETE, key.SerializeToString()))

    def Clear(self):
        datastore_file_stub.DatastoreFileStub.Clear(self)
        self._kinds = {}
        self.history.clear()
        if self.logging:
            self.pending = [(_LOG_CLEAR, b'')]

    # -- readTime ------------------------------------------------------------
    def stamp_history(self):
        """The commit just applied happened now: stamp what it replaced."""
        if not self.unstamped:
            return
        now = int(time.time() * 1000000)
        if self.history and now <= self.history[-1][0]:
            now = self.history[-1][0] + 1
        for app_kind, ok, old in self.unstamped:
            self.history.append((now, app_kind, ok, old))
        self.unstamped = []
        while self.history and self.history[0][0] < now - HISTORY_SECONDS * 1000000:
            self.history.popleft()

    def as_of_kind(self, app_kind, t):
        """The kind's records at time ``t`` (us), in key order; None when
        nothing of the kind was written since (read the present)."""
        undo = [(ok, old) for ts, ak, ok, old in self.history
                if ts > t and ak == app_kind]
        if not undo:
            return None
        idx = self._kinds.get(app_kind)
        state = dict(idx.stored) if idx is not None else {}
        for ok, old in reversed(undo):  # newest first, back to the oldest
            if old is None:
                state.pop(ok, None)
            else:
                state[ok] = old
        return [state[k].record for k in sorted(state)]

    def as_of_key(self, app_kind, ok, t):
        """(written since t, the _StoredEntity at t or None)."""
        found, old = False, None
        for ts, ak, k, prev in reversed(self.history):
            if ts <= t:
                break
            if ak == app_kind and k == ok:
                found, old = True, prev
        return found, old

    # -- queries ---------------------------------------------------------------
    def _GetQueryCursor(self, query, filters, orders, index_list):
        if self.as_of is not None and query.HasField('kind') and \
                query.kind not in self._pseudo_kinds:
            app_kind = (datastore_types.EncodeAppIdNamespace(
                query.app, query.name_space), query.kind)
            records = self.as_of_kind(app_kind, self.as_of)
            if records is not None:
                return datastore_stub_util._ExecuteQuery(
                    records, query, filters, orders, index_list)
        window = self._key_order_window(query, filters, orders)
        if window is None:  # anything else: the stub's full scan and sort
            try:
                return datastore_file_stub.DatastoreFileStub._GetQueryCursor(
                    self, query, filters, orders, index_list)
            finally:
                # its defaultdict lookup leaves an empty kind behind, which
                # __kind__ queries would then list
                app_kind = (datastore_types.EncodeAppIdNamespace(
                    query.app, query.name_space), query.kind)
                entities = self._GetAllEntities()
                if app_kind in entities and not entities[app_kind]:
                    del entities[app_kind]
        # The stub's own query code on just the part of the kind this batch
        # can return: it applies the filters, cursors, offset and limit
        # itself and makes the same cursors.
        return datastore_stub_util._ExecuteQuery(
            window, query, filters, orders, index_list)

    _KEY_OPS = frozenset([
        datastore_pb.Query.Filter.LESS_THAN,
        datastore_pb.Query.Filter.LESS_THAN_OR_EQUAL,
        datastore_pb.Query.Filter.GREATER_THAN,
        datastore_pb.Query.Filter.GREATER_THAN_OR_EQUAL,
        datastore_pb.Query.Filter.EQUAL])

    def _key_order_window(self, query, filters, orders):
        """For a query of one kind in key order (ascending or descending),
        with at most ``__key__`` filters and key cursors: the records this
        batch can return, in query order, with one spare on each side; else
        None.  Every bound is found by bisection in the kind's key index."""
        if (not query.HasField('kind') or query.kind in self._pseudo_kinds or
                query.HasField('ancestor') or query.property_name or
                query.group_by_property_name or query.shallow):
            return None
        for o in orders:
            if o.property != '__key__':
                return None
        app, ns = query.app, query.name_space
        bounds = []   # (order key, 'lo' or 'hi', right)
        F = datastore_pb.Query.Filter
        for f in filters:
            if f.op not in self._KEY_OPS or len(f.property) != 1 or \
                    f.property[0].name != '__key__' or \
                    not f.property[0].value.HasField('referencevalue'):
                return None
            rv = f.property[0].value.referencevalue
            if rv.app != app or rv.name_space != ns:
                return None
            k = _order_key(rv.pathelement)
            if f.op in (F.GREATER_THAN, F.GREATER_THAN_OR_EQUAL, F.EQUAL):
                bounds.append((k, 'lo', f.op == F.GREATER_THAN))
            if f.op in (F.LESS_THAN, F.LESS_THAN_OR_EQUAL, F.EQUAL):
                bounds.append((k, 'hi', f.op != F.LESS_THAN))
        direction = datastore_stub_util._GuessOrders(filters, orders)[0].direction
        descending = direction == datastore_pb.Query.Order.DESCENDING
        datastore_stub_util.NormalizeCursors(query, direction)  # idempotent
        for name, is_start in (('compiled_cursor', True),
                               ('end_compiled_cursor', False)):
            if not query.HasField(name):
                continue
            c = getattr(query, name)
            if c.HasField('absolute_position'):
                return None
            if not c.HasField('postfix_position'):
                continue
            pos = c.postfix_position
            if len(pos.index_value) or not pos.HasField('key') or \
                    pos.key.app != app or pos.key.name_space != ns:
                return None  # the stub says what is wrong with it
            k = _order_key(pos.key.path.element)
            before = pos.before
            # (see BaseCursor._IsBeforeCursor and ListCursor)
            if not descending:
                bounds.append((k, 'lo' if is_start else 'hi', not before))
            else:
                bounds.append((k, 'hi' if is_start else 'lo', before))
        idx = self._kinds.get((datastore_types.EncodeAppIdNamespace(app, ns),
                               query.kind))
        if idx is None:
            return []
        keys = idx.keys
        lo, hi = (0, 0), keys.end()
        for k, side, right in bounds:
            p = keys.position(k, right)
            if side == 'lo':
                lo = max(lo, p)
            else:
                hi = min(hi, p)
        count = query.count if query.HasField('count') else \
            query.limit if query.HasField('limit') else \
            datastore_stub_util.BaseDatastore._BATCH_SIZE
        n = min(query.offset, datastore_stub_util._MAX_QUERY_OFFSET) + \
            min(count, datastore_stub_util._MAXIMUM_RESULTS) + 2
        if lo >= hi:
            return []
        # a spare key just outside the range on the side it starts from;
        # the stub drops it again (it rechecks filters and cursors)
        if not descending:
            picked = keys.forward(lo, hi, n)
            prev = keys.backward((0, 0), lo, 1)
            picked = prev + picked
        else:
            picked = keys.backward(lo, hi, n)
            nxt = keys.forward(hi, keys.end(), 1)
            picked = nxt + picked
        stored = idx.stored
        return [stored[k].record for k in picked]


def _key_text(v1_key):
    """A key in the text form Google uses in ALREADY_EXISTS / NOT_FOUND."""
    out = ['app: "%s"' % v1_key.partition_id.project_id]
    if v1_key.partition_id.namespace_id:
        out.append('name_space: "%s"' % v1_key.partition_id.namespace_id)
    out.append('path <')
    for el in v1_key.path:
        out.append('  Element {')
        out.append('    type: "%s"' % el.kind)
        if el.WhichOneof('id_type') == 'id':
            out.append('    id: %d' % el.id)
        elif el.WhichOneof('id_type') == 'name':
            out.append('    name: "%s"' % el.name)
        out.append('  }')
    out.append('>')
    return '\n'.join(out) + '\n'


def _now_ts(msg):
    us = int(time.time() * 1000000)
    msg.seconds, rem = divmod(us, 1000000)
    msg.nanos = rem * 1000


class _Log(object):
    """``FILE.log``: what was committed since the last snapshot, as frames
    (length, crc32, records), each appended and fsync'd before the server
    answers.  A torn last frame (a crash while writing, before any answer)
    is ignored when the log is read back."""

    def __init__(self, path):
        self.path = path
        self.fd = None
        self.size = 0

    def read_frames(self):
        """-> (payloads of the intact frames, whether the file is clean)."""
        try:
            with open(self.path, 'rb') as f:
                data = f.read()
        except FileNotFoundError:
            return [], False
        if not data.startswith(_LOG_MAGIC):
            if data:
                raise RuntimeError('%s is not a kindsnap dev server log'
                                   % self.path)
            return [], False
        pos, frames = len(_LOG_MAGIC), []
        while pos + _FRAME.size <= len(data):
            n, crc = _FRAME.unpack_from(data, pos)
            payload = data[pos + _FRAME.size:pos + _FRAME.size + n]
            if len(payload) != n or zlib.crc32(payload) != crc:
                break
            frames.append(payload)
            pos += _FRAME.size + n
        return frames, pos == len(data)

    def open(self):
        self.fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND,
                          0o644)
        self.size = os.fstat(self.fd).st_size
        _fsync_dir(self.path)  # the log's directory entry, if just created

    def append(self, payload):
        frame = _FRAME.pack(len(payload), zlib.crc32(payload)) + payload
        _write_all(self.fd, frame)
        os.fsync(self.fd)
        self.size += len(frame)

    def reset(self):
        os.ftruncate(self.fd, 0)
        _write_all(self.fd, _LOG_MAGIC)
        os.fsync(self.fd)
        self.size = len(_LOG_MAGIC)

    def close(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def _write_all(fd, data):
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _write_atomically(path, write):
    """write(file) into path.tmp, fsync, rename over path, fsync the dir."""
    tmp = path + '.tmp'
    with open(tmp, 'wb') as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path)


def _fsync_dir(path):
    dfd = os.open(os.path.dirname(path), os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


COMPACT_BYTES = 32 * 1024 * 1024


class Datastore(object):
    """v1 semantics on top of the App Engine v3 stub.  Not thread-safe:
    callers hold ``self.lock`` and call ``flush`` before they answer.

    Persistence (``storage``): ``FILE`` is a snapshot in the stub's own
    format (a pickled list of its encoded entities and the commit
    timestamp), ``FILE.ids.json`` the id counters at that snapshot, and
    ``FILE.log`` every change since (see ``flush``).  At start the log is
    replayed onto the snapshot and compacted into a new one; while running it
    is compacted when it passes max(``compact_bytes``, 2 x the snapshot)."""

    def __init__(self, storage=None, auto_id_policy='scattered',
                 batch_size=MAX_STUB_BATCH, batch_bytes=1024 * 1024,
                 max_mutations=500, compact_bytes=COMPACT_BYTES):
        self.lock = threading.RLock()
        self.batch_size = max(1, min(batch_size, MAX_STUB_BATCH))
        self.batch_bytes = batch_bytes
        self.max_mutations = max_mutations
        self.compact_bytes = compact_bytes
        self.read_time_ok = True
        self.sequential = auto_id_policy == 'sequential'
        if storage:
            storage = os.path.abspath(storage)
            os.makedirs(os.path.dirname(storage), exist_ok=True)
        self.storage = storage
        # loads the snapshot FILE, if any
        self.stub = _FileStub(storage, datastore_stub_util.SEQUENTIAL
                              if self.sequential else datastore_stub_util.SCATTERED)
        apiproxy_stub_map.apiproxy = apiproxy_stub_map.APIProxyStubMap()
        apiproxy_stub_map.apiproxy.RegisterStub('datastore_v3', self.stub)
        resolver = datastore_pbs._IdentityIdResolver()  # app id == project id
        self.ec = datastore_pbs.get_entity_converter(resolver)
        self.sc = datastore_stub_util.get_service_converter(resolver)
        self.ids_file = storage + '.ids.json' if storage else None
        self._load_id_counters()
        self.log = None
        self._log_broken = False
        self._snapshot_bytes = 0
        if storage:
            self.log = _Log(storage + '.log')
            frames, clean = self.log.read_frames()
            for payload in frames:
                self._replay(payload)
            self.log.open()
            if frames or not clean:
                self._compact()
            elif os.path.exists(storage):
                self._snapshot_bytes = os.path.getsize(storage)
            self.stub.logging = True
        self._saved_meta = self._meta()
        self.stub.versioning = True

    # -- id counters (the stub only re-derives them from stored entities) --
    def _load_id_counters(self):
        if self.ids_file and os.path.exists(self.ids_file):
            with open(self.ids_file) as f:
                saved = json.load(f)
            self.stub._SetIdCounter(datastore_stub_util.SEQUENTIAL,
                                    int(saved['sequential']))
            self.stub._SetIdCounter(datastore_stub_util.SCATTERED,
                                    int(saved['scattered']))

    def _id_counters(self):
        return (self.stub._IdCounter(datastore_stub_util.SEQUENTIAL),
                self.stub._IdCounter(datastore_stub_util.SCATTERED))

    def _meta(self):
        return self._id_counters() + (self.stub._GetReadTimestamp(),)

    # -- persistence --------------------------------------------------------
    def _replay(self, payload):
        """Applies one log frame (at start, before serving)."""
        pos, end = 0, len(payload)
        while pos < end:
            kind = payload[pos:pos + 1]
            (n,) = _REC_LEN.unpack_from(payload, pos + 1)
            pos += 1 + _REC_LEN.size
            data = payload[pos:pos + n]
            pos += n
            if kind == _LOG_PUT:
                self.stub._StoreRecord(datastore_stub_util._FromStorageEntity(
                    entity_pb2.EntityProto.FromString(data)))
            elif kind == _LOG_DELETE:
                self.stub._Delete(entity_pb2.Reference.FromString(data))
            elif kind == _LOG_CLEAR:
                self.stub.Clear()
            elif kind == _LOG_META:
                # counters and the commit timestamp only grow; max() also
                # covers a log older than the ids file (a crash mid-compaction)
                seq, scat, ts = _META.unpack(data)
                for space, value in ((datastore_stub_util.SEQUENTIAL, seq),
                                     (datastore_stub_util.SCATTERED, scat)):
                    if value > self.stub._IdCounter(space):
                        self.stub._SetIdCounter(space, value)
                self.stub._commit_timestamp = max(self.stub._commit_timestamp, ts)
            else:
                raise RuntimeError('%s: unknown log record %r'
                                   % (self.log.path, kind))

    def flush(self):
        """Makes every change applied so far durable before the caller
        answers: the stored/deleted entities, the id counters and the commit
        timestamp go to the log as one frame, fsync'd.  Cost: the size of the
        change (plus, now and then, a compaction)."""
        if self.log is None:
            return
        recs = self.stub.pending
        meta = self._meta()
        if not recs and meta == self._saved_meta and not self._log_broken:
            return
        self.stub.pending = []
        if self._log_broken:
            self._compact()  # raises again while the disk keeps failing
            return
        parts = []
        for kind, data in recs:
            parts += (kind, _REC_LEN.pack(len(data)), data)
        m = _META.pack(*meta)
        parts += (_LOG_META, _REC_LEN.pack(len(m)), m)
        try:
            self.log.append(b''.join(parts))
        except OSError:
            # the log may end in a partial frame now: a fresh snapshot of
            # what is in memory replaces it (or this request fails)
            self._log_broken = True
            self._compact()
            return
        self._saved_meta = meta
        if self.log.size > max(self.compact_bytes, 2 * self._snapshot_bytes):
            self._compact()

    def _compact(self):
        """Snapshot of everything in memory to FILE and FILE.ids.json (each
        written to a temporary file, fsync'd and renamed), then an empty log.
        A crash in between leaves a log that replays idempotently onto the
        new snapshot."""
        encoded = [stored.encoded_protobuf
                   for kind in self.stub._GetAllEntities().values()
                   for stored in kind.values()]
        encoded.append(self.stub._GetReadTimestamp())
        _write_atomically(self.storage, lambda f: pickle.dump(
            encoded, f, protocol=pickle.HIGHEST_PROTOCOL))
        seq, scat = self._id_counters()
        _write_atomically(self.ids_file, lambda f: f.write(json.dumps(
            {'sequential': seq, 'scattered': scat}).encode('utf-8')))
        self.log.reset()
        self.stub.pending = []
        self._log_broken = False
        self._saved_meta = self._meta()
        self._snapshot_bytes = os.path.getsize(self.storage)

    def reset(self):
        self.stub.Clear()
        if self.log is not None:
            self._compact()

    # ------------------------------------------------------------ v3 calls --
    def _v3(self, method, req, resp):
        try:
            self.stub.MakeSyncCall('datastore_v3', method, req, resp)
        except apiproxy_errors.ApplicationError as e:
            status = _V3_STATUS.get(e.application_error, 'INTERNAL')
            msg = e.error_detail or status
            if status == 'ABORTED':
                msg = MSG_ABORTED
            raise ApiError(status, msg)
        return resp

    def _v3_txn(self, v1_txn):
        v3_txn = datastore_pb.Transaction()
        try:
            self.sc.v1_to_v3_txn(v1_txn, v3_txn)
        except Exception:
            raise bad('The referenced transaction has expired or is no longer valid.')
        return v3_txn

    def _begin(self, project, read_only=False):
        req = datastore_pb.BeginTransactionRequest()
        req.app = project
        req.allow_multiple_eg = True
        if read_only:
            req.mode = datastore_pb.BeginTransactionRequest.READ_ONLY
        v3_txn = self._v3('BeginTransaction', req, datastore_pb.Transaction())
        return self.sc._v3_to_v1_txn(v3_txn)

    # ---------------------------------------------------------- validation --
    def check_database(self, database_id):
        if database_id not in ('', '(default)'):
            raise bad('Named databases are not supported by this dev server '
                      '(only the default database): "%s".' % database_id)

    def check_partition(self, project, pid, what='partition'):
        if pid.project_id != project:
            raise bad('mismatched project id within request: "%s" (%s) vs "%s" '
                      '(request).' % (pid.project_id, what, project))
        self.check_database(pid.database_id)
        ns = pid.namespace_id
        if not _NAMESPACE_RE.match(ns):
            raise bad('Illegal string "%s" in namespace.' % ns)
        if _RESERVED_RE.match(ns):
            raise bad('The namespace "%s" is reserved.' % ns)

    def check_key(self, project, key, complete=True, incomplete=False,
                  embedded=False):
        """complete: a complete key is allowed; incomplete: an incomplete one."""
        if not embedded or key.HasField('partition_id'):
            if embedded and not key.partition_id.project_id:
                pass
            else:
                self.check_partition(project, key.partition_id, 'key')
        n = len(key.path)
        if n == 0:
            raise bad('Key path is empty.')
        if n > MAX_KEY_PATH:
            raise bad('Key path has more than %d elements.' % MAX_KEY_PATH)
        for i, el in enumerate(key.path):
            if not el.kind:
                raise bad('The kind is missing.')
            if len(el.kind.encode('utf-8')) > MAX_INDEXED_BYTES:
                raise bad('The key path element kind is longer than %d bytes.'
                          % MAX_INDEXED_BYTES)
            if _RESERVED_RE.match(el.kind):
                raise bad('The key path element kind "%s" is reserved.' % el.kind)
            which = el.WhichOneof('id_type')
            if which == 'id' and el.id == 0:
                raise bad('Key path id cannot be zero.')
            if which == 'name':
                if not el.name:
                    raise bad('The key path element name is empty.')
                if len(el.name.encode('utf-8')) > MAX_INDEXED_BYTES:
                    raise bad('The key path element name is longer than %d '
                              'bytes.' % MAX_INDEXED_BYTES)
                if _RESERVED_RE.match(el.name):
                    raise bad('The key path element name "%s" is reserved.'
                              % el.name)
            if which is None and i < n - 1:
                raise bad('Key path element must not be incomplete: [%s: ].'
                          % el.kind)
        last_complete = key.path[-1].WhichOneof('id_type') is not None
        if last_complete and not complete:
            raise bad('Key path element must not be complete: [%s].'
                      % _path_text(key))
        if not last_complete and not incomplete:
            raise bad('Key path element must not be incomplete: [%s: ].'
                      % key.path[-1].kind)

    def check_entity(self, project, entity, top=True, prefix=''):
        for name, value in entity.properties.items():
            if not name:
                raise bad('The property name is missing.')
            if len(name.encode('utf-8')) > MAX_INDEXED_BYTES:
                raise bad('The property name is longer than %d bytes.'
                          % MAX_INDEXED_BYTES)
            if _RESERVED_RE.match(name):
                raise bad('The property name "%s" is reserved.' % name)
            if name == HIDDEN_PROP:
                raise bad('The property name "%s" is reserved by the kindsnap '
                          'dev server.' % name)
            self.check_value(project, prefix + name, value)

    def check_value(self, project, name, value, in_array=False):
        kind = value.WhichOneof('value_type')
        if kind == 'array_value':
            if in_array:
                raise bad('An array value cannot contain another array value.')
            if value.exclude_from_indexes:
                raise bad('Exclude from indexes cannot be set on a list value')
            if value.meaning:
                raise bad('A meaning cannot be set on a list value')
            for v in value.array_value.values:
                self.check_value(project, name, v, in_array=True)
            return
        if kind in ('string_value', 'blob_value'):
            raw = value.string_value.encode('utf-8') if kind == 'string_value' \
                else value.blob_value
            if not value.exclude_from_indexes and len(raw) > MAX_INDEXED_BYTES:
                raise bad('The value of property "%s" is longer than %d bytes.'
                          % (name, MAX_INDEXED_BYTES))
            if len(raw) > MAX_UNINDEXED_BYTES:
                raise bad('The value of property "%s" is longer than %d bytes.'
                          % (name, MAX_UNINDEXED_BYTES))
        elif kind == 'key_value':
            self.check_key(value.key_value.partition_id.project_id or project,
                           value.key_value, complete=True, incomplete=False,
                           embedded=True)
        elif kind == 'geo_point_value':
            g = value.geo_point_value
            if not -90.0 <= g.latitude <= 90.0:
                raise bad('Latitude outside permitted range [-90.0, 90.0].')
            if not -180.0 <= g.longitude <= 180.0:
                raise bad('Longitude outside permitted range [-180.0, 180.0].')
        elif kind == 'entity_value':
            e = value.entity_value
            if e.HasField('key'):
                self.check_key(e.key.partition_id.project_id or project, e.key,
                               complete=True, incomplete=True, embedded=True)
            self.check_entity(project, e, top=False, prefix=name + '.')

    # ------------------------------------------------- v1 <-> v3 entities --
    def _sanitized(self, v1_entity):
        """A copy the App Engine converter and the v3 stub accept: meanings
        dropped, embedded entities unindexed at the top level."""
        e = gd.Entity()
        e.CopyFrom(v1_entity)

        def fix_value(v, top):
            v.meaning = 0
            k = v.WhichOneof('value_type')
            if k == 'array_value':
                for sub in v.array_value.values:
                    fix_value(sub, top)
            elif k == 'entity_value':
                if top:
                    v.exclude_from_indexes = True
                if v.entity_value.HasField('key') and \
                        not v.entity_value.key.path:
                    v.entity_value.ClearField('key')
                for sub in v.entity_value.properties.values():
                    fix_value(sub, False)
        for v in e.properties.values():
            fix_value(v, True)
        return e

    def to_v3(self, v1_entity):
        """v1 entity (complete key) -> v3 EntityProto, with the original kept
        in HIDDEN_PROP when the v3 form would not give it back exactly."""
        v3e = entity_pb2.EntityProto()
        try:
            self.ec.v1_to_v3_entity(self._sanitized(v1_entity), v3e)
            back = gd.Entity()
            self.ec.v3_to_v1_entity(v3e, back)
        except Exception as e:  # conversion problem: keep the original only
            raise bad('Invalid entity: %s' % e)
        back.ClearField('key')
        orig = gd.Entity()
        orig.CopyFrom(v1_entity)
        orig.ClearField('key')
        if back.SerializeToString(deterministic=True) != \
                orig.SerializeToString(deterministic=True):
            raw = orig.SerializeToString(deterministic=True)
            for i in range(0, max(len(raw), 1), HIDDEN_CHUNK):
                p = v3e.raw_property.add()
                p.name = HIDDEN_PROP.encode('utf-8')
                p.meaning = entity_pb2.Property.BLOB
                p.multiple = True
                p.value.stringValue = raw[i:i + HIDDEN_CHUNK]
        return v3e

    @staticmethod
    def restore(v1_entity):
        if HIDDEN_PROP not in v1_entity.properties:
            return
        v = v1_entity.properties[HIDDEN_PROP]
        if v.WhichOneof('value_type') == 'array_value':
            raw = b''.join(x.blob_value for x in v.array_value.values)
        else:
            raw = v.blob_value
        orig = gd.Entity.FromString(raw)
        orig.key.CopyFrom(v1_entity.key)
        v1_entity.CopyFrom(orig)

    def _v3_ref(self, v1_key):
        ref = entity_pb2.Reference()
        self.ec.v1_to_v3_reference(v1_key, ref)
        return ref

    def _allocate(self, v3_ref):
        """Give an incomplete v3 reference a fresh id (in place)."""
        if self.sequential:
            start, _ = self.stub._AllocateSequentialIds(v3_ref, size=1)
            v3_ref.path.element[-1].id = start
        else:
            self.stub._AllocateIds([v3_ref])

    # -------------------------------------------------------------- lookup --
    def _read_time(self, read_options):
        """readOptions.readTime in us, or None."""
        if read_options.WhichOneof('consistency_type') != 'read_time':
            return None
        if not self.read_time_ok:
            raise bad('readTime is not supported by this dev server '
                      '(--no-read-time)')
        rt = read_options.read_time
        t = rt.seconds * 1000000 + rt.nanos // 1000
        now = int(time.time() * 1000000)
        if t > now:
            raise bad('readTime must not be in the future')
        if t < now - HISTORY_SECONDS * 1000000:
            raise ApiError('FAILED_PRECONDITION',
                           'readTime is older than the versions kept '
                           '(%d s)' % HISTORY_SECONDS)
        return t

    def _read_txn(self, project, read_options):
        """-> (v3 transaction or None, v1 new transaction or None)"""
        which = read_options.WhichOneof('consistency_type')
        if which == 'read_time':
            return None, None
        if which == 'transaction':
            return self._v3_txn(read_options.transaction), None
        if which == 'new_transaction':
            ro = read_options.new_transaction.HasField('read_only')
            v1_txn = self._begin(project, ro)
            return self._v3_txn(v1_txn), v1_txn
        return None, None

    def lookup(self, project, req):
        self.check_database(req.database_id)
        if len(req.keys) > MAX_LOOKUP_KEYS:
            raise bad('cannot get more than %d keys in a single call'
                      % MAX_LOOKUP_KEYS)
        for k in req.keys:
            self.check_key(project, k)
        v3_txn, new_txn = self._read_txn(project, req.read_options)
        v3_req = datastore_pb.GetRequest()
        v3_req.allow_deferred = True
        if v3_txn is not None:
            v3_req.transaction.CopyFrom(v3_txn)
        for k in req.keys:
            v3_req.key.add().CopyFrom(self._v3_ref(k))
        v3_resp = self._v3('Get', v3_req, datastore_pb.GetResponse())
        as_of = self._read_time(req.read_options)
        if as_of is not None:
            self._lookup_as_of(req, v3_req, v3_resp, as_of)
        resp = self.sc.v3_to_v1_lookup_resp(v3_resp)
        for r in resp.found:
            self.restore(r.entity)
        if new_txn:
            resp.transaction = new_txn
        _now_ts(resp.read_time)
        return resp

    def _lookup_as_of(self, req, v3_req, v3_resp, t):
        """Rewrite a Get's answer to the state at ``t`` for the keys written
        since."""
        if not any(ts > t for ts, _, _, _ in self.stub.history):
            return
        answers = []
        for ref, ent in zip(v3_req.key, v3_resp.entity):
            app_kind, _, _ = self.stub._GetEntityLocation(ref)
            written, old = self.stub.as_of_key(
                app_kind, _order_key(ref.path.element), t)
            if not written:
                answers.append((ref, ent.entity if ent.HasField('entity')
                                else None))
            else:
                answers.append((ref, old.record.entity if old is not None
                                else None))
        del v3_resp.entity[:]
        for ref, entity in answers:
            e = v3_resp.entity.add()
            if entity is not None:
                e.entity.CopyFrom(entity)
            else:
                e.key.CopyFrom(ref)

    # ------------------------------------------------------------ runQuery --
    def run_query(self, project, req):
        self.check_database(req.database_id)
        if req.HasField('gql_query'):
            raise ApiError('UNIMPLEMENTED',
                           'GQL queries are not supported by this dev server.')
        if not req.HasField('query'):
            raise bad('A query must be set.')
        pid = req.partition_id
        if not pid.project_id:
            pid.project_id = project
        self.check_partition(project, pid)
        v3_txn, new_txn = self._read_txn(project, req.read_options)
        q = req.query
        self._check_filter(q.filter)
        v3q = datastore_pb.Query()
        try:
            self.sc._query_converter.v1_to_v3_query(pid, q, v3q)
        except datastore_pbs.InvalidConversionError as e:
            raise bad(str(e))
        except apiproxy_errors.ApplicationError as e:
            raise bad(e.error_detail)
        if v3_txn is not None and v3q.HasField('ancestor'):
            # The v3 stub only runs ancestor queries in a transaction;
            # Firestore in Datastore mode runs any.  Others read outside it.
            v3q.transaction.CopyFrom(v3_txn)
        v3q.count = self.batch_size
        v3q.compile = True
        self.stub.as_of = self._read_time(req.read_options)
        try:
            v3r = self._v3('RunQuery', v3q, datastore_pb.QueryResult())
        finally:
            self.stub.as_of = None
            # the stub keeps every cursor and query for Next(); we never call it
            self.stub._query_cursors.clear()
            self.stub._DatastoreStub__query_history.clear()
        resp = gd.RunQueryResponse()
        self.sc.v3_to_v1_query_result_batch(v3r, resp.batch)
        batch = resp.batch
        keys_only = len(q.projection) == 1 and \
            q.projection[0].property.name == '__key__'
        if keys_only:
            batch.entity_result_type = gd.EntityResult.KEY_ONLY
        elif len(q.projection):
            batch.entity_result_type = gd.EntityResult.PROJECTION
        else:
            batch.entity_result_type = gd.EntityResult.FULL
            for r in batch.entity_results:
                self.restore(r.entity)
        n = len(batch.entity_results)
        # batch byte cap, as the real service pages big entities
        total = 0
        for i, r in enumerate(batch.entity_results):
            total += r.ByteSize()
            if i > 0 and total > self.batch_bytes:
                del batch.entity_results[i:]
                batch.end_cursor = batch.entity_results[i - 1].cursor
                batch.more_results = gd.QueryResultBatch.NOT_FINISHED
                break
        else:
            if v3r.more_results:
                batch.more_results = gd.QueryResultBatch.NOT_FINISHED
            elif q.HasField('limit') and n >= q.limit.value and \
                    batch.skipped_results >= q.offset:
                batch.more_results = gd.QueryResultBatch.MORE_RESULTS_AFTER_LIMIT
            elif q.end_cursor:
                batch.more_results = gd.QueryResultBatch.MORE_RESULTS_AFTER_CURSOR
            else:
                batch.more_results = gd.QueryResultBatch.NO_MORE_RESULTS
        if not batch.end_cursor and q.start_cursor:
            batch.end_cursor = q.start_cursor
        if new_txn:
            resp.transaction = new_txn
        if req.read_options.WhichOneof('consistency_type') == 'read_time':
            batch.read_time.CopyFrom(req.read_options.read_time)
        else:
            _now_ts(batch.read_time)
        return resp

    _FILTER_OPS = {
        gd.PropertyFilter.LESS_THAN, gd.PropertyFilter.LESS_THAN_OR_EQUAL,
        gd.PropertyFilter.GREATER_THAN, gd.PropertyFilter.GREATER_THAN_OR_EQUAL,
        gd.PropertyFilter.EQUAL, gd.PropertyFilter.HAS_ANCESTOR}

    def _check_filter(self, f):
        which = f.WhichOneof('filter_type')
        if which == 'composite_filter':
            if f.composite_filter.op != gd.CompositeFilter.AND:
                raise bad('Only AND composite filters are supported by this '
                          'dev server.')
            for sub in f.composite_filter.filters:
                self._check_filter(sub)
        elif which == 'property_filter':
            op = f.property_filter.op
            if op not in self._FILTER_OPS:
                raise bad('Filter operator %s is not supported by this dev '
                          'server.' % gd.PropertyFilter.Operator.Name(op))

    # -------------------------------------------------------------- commit --
    def validate_commit(self, project, req):
        self.check_database(req.database_id)
        n = len(req.mutations)
        if n > self.max_mutations:
            raise bad('cannot write more than %d entities in a single call'
                      % self.max_mutations)
        mode = req.mode
        sel = req.WhichOneof('transaction_selector')
        if mode == gd.CommitRequest.MODE_UNSPECIFIED:
            mode = gd.CommitRequest.TRANSACTIONAL if sel else \
                gd.CommitRequest.NON_TRANSACTIONAL
        if mode == gd.CommitRequest.TRANSACTIONAL and not sel:
            raise bad('Transactional commit requires a transaction.')
        if mode == gd.CommitRequest.NON_TRANSACTIONAL and sel:
            raise bad('Non-transactional commit cannot specify a transaction.')
        seen = set()
        for m in req.mutations:
            op = m.WhichOneof('operation')
            if op is None:
                raise bad('A mutation must have an operation.')
            for f in ('base_version', 'update_time'):
                if m.HasField(f):
                    raise bad('%s is not supported by this dev server.' % f)
            if m.HasField('property_mask') or len(m.property_transforms):
                raise bad('propertyMask / propertyTransforms are not supported '
                          'by this dev server.')
            if op == 'delete':
                key = m.delete
                self.check_key(project, key)
            else:
                ent = getattr(m, op)
                if not ent.HasField('key'):
                    raise bad('The entity key is missing.')
                key = ent.key
                self.check_key(project, key, incomplete=op in ('insert', 'upsert'))
                if ent.ByteSize() > MAX_ENTITY_BYTES:
                    raise bad('entity is too big')
                self.check_entity(project, ent)
            if mode == gd.CommitRequest.NON_TRANSACTIONAL and \
                    key.path[-1].WhichOneof('id_type'):
                sk = key.SerializeToString(deterministic=True)
                if sk in seen:
                    raise bad('A non-transactional commit may not contain '
                              'multiple mutations affecting the same entity.')
                seen.add(sk)
        return mode

    def commit(self, project, req):
        try:
            return self._commit_stamped(project, req)
        finally:
            self.stub.stamp_history()

    def _commit_stamped(self, project, req):
        mode = self.validate_commit(project, req)
        transactional = mode == gd.CommitRequest.TRANSACTIONAL
        v3_txn = None
        if transactional:
            if req.WhichOneof('transaction_selector') == 'single_use_transaction':
                ro = req.single_use_transaction.HasField('read_only')
                v3_txn = self._v3_txn(self._begin(project, ro))
            else:
                v3_txn = self._v3_txn(req.transaction)
        try:
            return self._commit(req, v3_txn)
        except Exception:
            if v3_txn is not None:
                try:
                    self._v3('Rollback', v3_txn, datastore_pb.CommitResponse())
                except Exception:
                    pass
            raise

    def _commit(self, req, v3_txn):
        # 1. keys; preconditions against stored state (+ this commit's effects)
        state = {}            # serialized v3 ref -> exists after earlier mutations
        plan = []             # (op, v3 ref, v1 entity or None, allocated v1 key)
        to_check = []
        for m in req.mutations:
            op = m.WhichOneof('operation')
            if op == 'delete':
                plan.append(['delete', self._v3_ref(m.delete), None, None])
                continue
            ent = getattr(m, op)
            ref = self._v3_ref(ent.key)
            plan.append([op, ref, ent, None])
            if ent.key.path[-1].WhichOneof('id_type') and op in ('insert', 'update'):
                to_check.append(ref)
        existing = set()
        if to_check:
            g = datastore_pb.GetRequest()
            if v3_txn is not None:
                g.transaction.CopyFrom(v3_txn)
            g.key.extend(to_check)
            gr = self._v3('Get', g, datastore_pb.GetResponse())
            for ref, res in zip(to_check, gr.entity):
                if res.HasField('entity'):
                    existing.add(ref.SerializeToString(deterministic=True))
        for step in plan:
            op, ref, ent, _ = step
            if op != 'delete' and not ref.path.element[-1].id and \
                    not ref.path.element[-1].HasField('name'):
                continue  # incomplete: gets a fresh id below
            sk = ref.SerializeToString(deterministic=True)
            exists = state.get(sk, sk in existing)
            if op == 'insert' and exists:
                raise ApiError('ALREADY_EXISTS',
                               'entity already exists: ' + _key_text(ent.key))
            if op == 'update' and not exists:
                raise ApiError('NOT_FOUND',
                               'no entity to update: ' + _key_text(ent.key))
            state[sk] = op != 'delete'
        # 2. ids for incomplete keys, v3 entities
        puts, deletes, order = [], [], []
        for step in plan:
            op, ref, ent, _ = step
            if op == 'delete':
                deletes.append(ref)
                order.append(('delete', ref))
                continue
            last = ref.path.element[-1]
            if not last.id and not last.HasField('name'):
                self._allocate(ref)
                v1k = gd.Key()
                self.ec.v3_to_v1_key(ref, v1k)
                step[3] = v1k
            full = gd.Entity()
            full.CopyFrom(ent)
            _truncate_timestamps(full)
            self.ec.v3_to_v1_key(ref, full.key)
            v3e = self.to_v3(full)
            puts.append(v3e)
            order.append(('put', v3e))
        # 3. apply
        index_updates = 0
        versions = {}
        if v3_txn is not None:
            for what, x in order:
                if what == 'put':
                    r = datastore_pb.PutRequest()
                    r.transaction.CopyFrom(v3_txn)
                    r.entity.add().CopyFrom(x)
                    pr = self._v3('Put', r, datastore_pb.PutResponse())
                    index_updates += pr.cost.index_writes
                else:
                    r = datastore_pb.DeleteRequest()
                    r.transaction.CopyFrom(v3_txn)
                    r.key.add().CopyFrom(x)
                    dr = self._v3('Delete', r, datastore_pb.DeleteResponse())
                    index_updates += dr.cost.index_writes
            cr = self._v3('Commit', v3_txn, datastore_pb.CommitResponse())
            index_updates += cr.cost.index_writes
            for v in cr.version:
                versions[v.root_entity_key.SerializeToString(
                    deterministic=True)] = v.version
        else:
            if puts:
                r = datastore_pb.PutRequest()
                r.entity.extend(puts)
                pr = self._v3('Put', r, datastore_pb.PutResponse())
                index_updates += pr.cost.index_writes
                for k, v in zip(pr.key, pr.version):
                    versions[k.SerializeToString(deterministic=True)] = v
            if deletes:
                r = datastore_pb.DeleteRequest()
                r.key.extend(deletes)
                dr = self._v3('Delete', r, datastore_pb.DeleteResponse())
                index_updates += dr.cost.index_writes
                for k, v in zip(deletes, dr.version):
                    versions[k.SerializeToString(deterministic=True)] = v
        resp = gd.CommitResponse()
        resp.index_updates = index_updates
        commit_version = max(versions.values()) if versions else 0
        for op, ref, ent, allocated in plan:
            mr = resp.mutation_results.add()
            if allocated is not None:
                mr.key.CopyFrom(allocated)
            root = entity_pb2.Reference()
            root.CopyFrom(ref)
            del root.path.element[1:]
            mr.version = versions.get(ref.SerializeToString(deterministic=True),
                                      versions.get(root.SerializeToString(
                                          deterministic=True), commit_version))
        _now_ts(resp.commit_time)
        return resp

    # ------------------------------------------------ ids and transactions --
    def allocate_ids(self, project, req):
        self.check_database(req.database_id)
        resp = gd.AllocateIdsResponse()
        for k in req.keys:
            self.check_key(project, k, complete=False, incomplete=True)
        for k in req.keys:
            ref = self._v3_ref(k)
            self._allocate(ref)
            self.ec.v3_to_v1_key(ref, resp.keys.add())
        return resp

    def reserve_ids(self, project, req):
        self.check_database(req.database_id)
        for k in req.keys:
            self.check_key(project, k)
        refs = [self._v3_ref(k) for k in req.keys]
        if refs:
            self.stub._AllocateIds(refs)  # complete keys: advance counters
        return gd.ReserveIdsResponse()

    def begin_transaction(self, project, req):
        self.check_database(req.database_id)
        resp = gd.BeginTransactionResponse()
        resp.transaction = self._begin(
            project, req.transaction_options.HasField('read_only'))
        return resp

    def rollback(self, project, req):
        self.check_database(req.database_id)
        if not req.transaction:
            raise bad('Invalid transaction.')
        self._v3('Rollback', self._v3_txn(req.transaction),
                 datastore_pb.CommitResponse())
        return gd.RollbackResponse()


def _truncate_timestamps(entity):
    """Timestamps are kept to the microsecond, as Google does."""
    def fix(v):
        k = v.WhichOneof('value_type')
        if k == 'timestamp_value':
            v.timestamp_value.nanos -= v.timestamp_value.nanos % 1000
        elif k == 'array_value':
            for sub in v.array_value.values:
                fix(sub)
        elif k == 'entity_value':
            _truncate_timestamps(v.entity_value)
    for v in entity.properties.values():
        fix(v)


def _path_text(key):
    parts = []
    for el in key.path:
        w = el.WhichOneof('id_type')
        parts.append('%s: %s' % (el.kind, el.id if w == 'id' else
                                 '"%s"' % el.name if w == 'name' else ''))
    return ', '.join(parts)


# ---------------------------------------------------------------- HTTP -----
METHODS = {
    'lookup': ('lookup', gd.LookupRequest, True),
    'runQuery': ('run_query', gd.RunQueryRequest, True),
    'commit': ('commit', gd.CommitRequest, True),
    'allocateIds': ('allocate_ids', gd.AllocateIdsRequest, False),
    'reserveIds': ('reserve_ids', gd.ReserveIdsRequest, False),
    'beginTransaction': ('begin_transaction', gd.BeginTransactionRequest, False),
    'rollback': ('rollback', gd.RollbackRequest, False),
}
_PATH_RE = re.compile(r'^/v1/projects/([^/:]+):([A-Za-z]+)$')


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'
    server_version = 'kindsnap-devserver/1'

    def log_message(self, fmt, *args):  # quiet unless --verbose
        if self.server.opts.verbose:
            sys.stderr.write('%s - %s\n' % (self.address_string(), fmt % args))

    def _send(self, code, payload, headers=None):
        body = payload.encode('utf-8') if isinstance(payload, str) else payload
        self.send_response(code)
        self.send_header('Content-Type', 'application/json; charset=UTF-8')
        self.send_header('Content-Length', str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _error(self, err):
        self._send(err.http, json.dumps({'error': {
            'code': err.http, 'message': err.message, 'status': err.status}},
            indent=2) + '\n', err.headers)

    def _read_body(self):
        if 'chunked' in (self.headers.get('Transfer-Encoding') or '').lower():
            chunks, total = [], 0
            while True:
                size = int(self.rfile.readline().split(b';')[0].strip() or b'0', 16)
                if size == 0:
                    while self.rfile.readline() not in (b'\r\n', b'\n', b''):
                        pass
                    break
                data = self.rfile.read(size)
                self.rfile.readline()
                total += size
                if total <= MAX_REQUEST_BYTES:
                    chunks.append(data)
            return b''.join(chunks), total
        length = int(self.headers.get('Content-Length') or 0)
        if length > MAX_REQUEST_BYTES:
            left = length
            while left > 0:  # drain so the client sees our answer
                got = self.rfile.read(min(left, 1 << 20))
                if not got:
                    break
                left -= len(got)
            return b'', length
        return self.rfile.read(length), length

    def do_POST(self):
        try:
            body, length = self._read_body()
        except Exception:
            self.close_connection = True
            return
        path = self.path.split('?', 1)[0]
        try:
            self._dispatch(path, body, length)
        except ApiError as e:
            self._error(e)
        except Exception as e:  # a bug: answer INTERNAL, keep serving
            traceback.print_exc()
            self._error(ApiError('INTERNAL', 'internal error: %s' % e))

    def _dispatch(self, path, body, length):
        srv = self.server
        opts = srv.opts
        if path == '/reset':
            with srv.ds.lock:
                srv.ds.reset()
            self._send(200, '{}\n')
            return
        if path in ('/stats', '/stats/reset'):
            with srv.stats.lock:
                payload = srv.stats.report()
                if path == '/stats/reset':
                    srv.stats.clear()
            self._send(200, json.dumps(payload, sort_keys=True) + '\n')
            return
        m = _PATH_RE.match(path)
        if not m or m.group(2) not in METHODS:
            raise ApiError('NOT_FOUND', 'The requested URL %s was not found on '
                           'this server.' % path)
        project, verb = m.group(1), m.group(2)
        attr, req_cls, faulty = METHODS[verb]
        if length > MAX_REQUEST_BYTES:
            raise bad('Request payload size exceeds the limit: %d bytes.'
                      % MAX_REQUEST_BYTES)
        try:
            text = body.decode('utf-8')
            json.loads(text or '{}')
        except ValueError:
            raise bad('Invalid JSON payload received. Unexpected token.')
        req = req_cls()
        try:
            json_format.Parse(text or '{}', req)
        except json_format.ParseError as e:
            raise bad('Invalid JSON payload received. %s' % e)
        if req.project_id and req.project_id != project:
            raise bad('mismatched project id within request: "%s" (body) vs '
                      '"%s" (URL).' % (req.project_id, project))
        req.project_id = project
        with srv.stats.lock:
            srv.stats.arrived(verb)
        if verb == 'runQuery' and not opts.scatter and \
                any(o.property.name == '__scatter__' for o in req.query.order):
            # the emulator has no __scatter__: an empty answer
            raise bad('__scatter__ is not supported (--no-scatter).')
        if opts.latency_ms:
            time.sleep(opts.latency_ms / 1000.0)
        if faulty and opts.fail_rate > 0:
            with srv.rng_lock:
                fail = srv.rng.random() < opts.fail_rate
                status = srv.rng.choice(('UNAVAILABLE', 'ABORTED'))
            if fail:
                raise self._injected(status)
        with srv.ds.lock:
            try:
                resp = getattr(srv.ds, attr)(project, req)
            finally:
                # durable before any answer, also for a call that failed
                # after applying something
                srv.ds.flush()
        with srv.stats.lock:
            srv.stats.answered(verb, req, resp)
        if verb == 'commit' and opts.fail_after_apply_rate > 0:
            with srv.rng_lock:
                fail = srv.rng.random() < opts.fail_after_apply_rate
            if fail:
                raise self._injected('UNAVAILABLE')
        self._send(200, json_format.MessageToJson(resp, ensure_ascii=False) + '\n')

    def _injected(self, status):
        if status == 'UNAVAILABLE':
            headers = {}
            if self.server.opts.retry_after is not None:
                headers['Retry-After'] = str(self.server.opts.retry_after)
            return ApiError('UNAVAILABLE', MSG_UNAVAILABLE, headers)
        return ApiError('ABORTED', MSG_ABORTED)

    def _not_post(self):
        self._read_body()
        self._error(ApiError('NOT_FOUND', 'The requested URL %s was not found '
                             'on this server.' % self.path.split('?', 1)[0]))

    do_GET = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _not_post


class Stats(object):
    """What a client cost: API requests as they arrive (and the most in any
    one second), and per kind the reads Datastore bills for answered calls:
    a runQuery of full entities is one entity read per result (at least
    one); a keys-only (or projection) runQuery is one entity read plus one
    small operation per result; a lookup is one entity read per key, found
    or missing (counted under ``lookups`` too).  Kinds are ``Kind`` or
    ``namespace/Kind``.  ``POST /stats`` shows them, ``POST /stats/reset``
    shows and zeroes them."""

    def __init__(self):
        self.lock = threading.Lock()
        self.clear()

    def clear(self):
        self.requests = {}
        self.window = collections.deque()   # arrival times in the last second
        self.max_per_second = 0
        self.kinds = {}

    def arrived(self, verb):
        self.requests[verb] = self.requests.get(verb, 0) + 1
        now = time.monotonic()
        w = self.window
        w.append(now)
        while w and w[0] <= now - 1.0:
            w.popleft()
        self.max_per_second = max(self.max_per_second, len(w))

    def _kind(self, namespace, kind):
        label = '%s/%s' % (namespace, kind) if namespace else kind
        return self.kinds.setdefault(
            label, {'entity_reads': 0, 'small_ops': 0, 'lookups': 0})

    def answered(self, verb, req, resp):
        if verb == 'runQuery' and req.HasField('query'):
            q = req.query
            kind = q.kind[0].name if len(q.kind) else ''
            c = self._kind(req.partition_id.namespace_id, kind)
            n = len(resp.batch.entity_results)
            if len(q.projection):
                c['entity_reads'] += 1
                c['small_ops'] += n
            else:
                c['entity_reads'] += max(1, n)
        elif verb == 'lookup':
            for r in list(resp.found) + list(resp.missing):
                k = r.entity.key
                c = self._kind(k.partition_id.namespace_id,
                               k.path[-1].kind if len(k.path) else '')
                c['entity_reads'] += 1
                c['lookups'] += 1

    def report(self):
        return {'requests': dict(self.requests),
                'total_requests': sum(self.requests.values()),
                'max_per_second': self.max_per_second,
                'kinds': copy.deepcopy(self.kinds)}


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--port', type=int, default=0)
    p.add_argument('--host', default='127.0.0.1')
    p.add_argument('--storage', default=None,
                   help='file to persist to (default: memory only)')
    p.add_argument('--fail-rate', type=float, default=0.0)
    p.add_argument('--fail-after-apply-rate', type=float, default=0.0)
    p.add_argument('--latency-ms', type=int, default=0)
    p.add_argument('--retry-after', type=int, default=None,
                   help='send Retry-After: N (seconds) on injected 503s')
    p.add_argument('--max-mutations', type=int, default=500)
    p.add_argument('--batch-size', type=int, default=MAX_STUB_BATCH,
                   help='max results per runQuery batch (<= 300)')
    p.add_argument('--batch-bytes', type=int, default=1024 * 1024,
                   help='max bytes of results per runQuery batch')
    p.add_argument('--auto-id-policy', choices=('scattered', 'sequential'),
                   default='scattered')
    p.add_argument('--log-compact-bytes', type=int, default=COMPACT_BYTES,
                   help='with --storage: compact the log into a new snapshot '
                   'when it passes max(N, 2 x the snapshot size)')
    p.add_argument('--no-scatter', dest='scatter', action='store_false',
                   help='refuse queries ordered by __scatter__, as the '
                   'emulator does not have it')
    p.add_argument('--no-read-time', dest='read_time', action='store_false',
                   help='refuse readOptions.readTime, as older emulators do')
    p.add_argument('--seed', type=int, default=None)
    p.add_argument('--verbose', action='store_true')
    return p.parse_args(argv)


def main(argv=None):
    opts = parse_args(argv)
    ds = Datastore(opts.storage, opts.auto_id_policy, opts.batch_size,
                   opts.batch_bytes, opts.max_mutations, opts.log_compact_bytes)
    if ':' in opts.host:
        Server.address_family = socket.AF_INET6
    srv = Server((opts.host, opts.port), Handler)
    srv.opts = opts
    srv.ds = ds
    ds.read_time_ok = opts.read_time
    srv.rng = random.Random(opts.seed)
    srv.rng_lock = threading.Lock()
    srv.stats = Stats()
    host = opts.host if ':' not in opts.host else '[%s]' % opts.host
    sys.stdout.write('LISTENING http://%s:%d\n' % (host, srv.server_address[1]))
    sys.stdout.flush()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        srv.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        with ds.lock:
            ds.flush()


if __name__ == '__main__':
    main()
