"""A stand-in for the retired Python-2 ``googledatastore`` package.

App Engine's own v1 <-> v3 converters (``google.appengine.datastore.datastore_pbs``)
and the v1 stub import ``googledatastore`` for the Cloud Datastore v1 protobuf
classes.  Those classes are the same ``google.datastore.v1`` messages that
``google-cloud-datastore`` ships (as the raw ``_pb`` behind its proto-plus
types), so this module re-exports them under the old names.

``install()`` must run before anything from ``google.appengine.datastore`` is
imported.
"""

import sys
import types

from google.cloud.datastore_v1 import types as v1
from google.protobuf import struct_pb2
from google.rpc import code_pb2

VERSION = (7, 0, 0)  # what datastore_pbs checks (>= 6.0.0)

_MICROS = 1000000


def _build_module():
    mod = types.ModuleType('googledatastore')
    mod.VERSION = VERSION
    mod.code_pb2 = code_pb2
    mod.NULL_VALUE = struct_pb2.NULL_VALUE
    for name in dir(v1):
        obj = getattr(v1, name)
        pb = getattr(obj, 'pb', None)
        if isinstance(obj, type) and callable(pb):
            try:
                setattr(mod, name, obj.pb())
            except TypeError:
                pass
    mod.PropertiesEntry = mod.Entity.PropertiesEntry
    # v1beta3's HAS_PARENT is gone from v1; the converters still compare
    # against it.  A value no request can carry.
    mod.PropertyFilter.HAS_PARENT = -1

    helper = types.ModuleType('googledatastore.helper')

    def micros_from_timestamp(timestamp):
        return timestamp.seconds * _MICROS + timestamp.nanos // 1000

    def micros_to_timestamp(micros, timestamp):
        seconds, rem = divmod(int(micros), _MICROS)
        timestamp.seconds = seconds
        timestamp.nanos = rem * 1000

    helper.micros_from_timestamp = micros_from_timestamp
    helper.micros_to_timestamp = micros_to_timestamp
    mod.helper = helper

    class RPCError(Exception):
        pass

    mod.RPCError = RPCError
    return mod


def install():
    if 'googledatastore' not in sys.modules:
        mod = _build_module()
        sys.modules['googledatastore'] = mod
        sys.modules['googledatastore.helper'] = mod.helper
    return sys.modules['googledatastore']
