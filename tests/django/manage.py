#!/usr/bin/env python3
"""The Django project kindsnap's SQL tests snapshot and restore.

The database comes from the environment: KINDSNAP_DJANGO_DB (a SQLite file)
or KINDSNAP_DJANGO_PG (a postgres:// URL).
"""
import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "proj.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
