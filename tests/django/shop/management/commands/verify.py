"""Integrity checks on a (restored) database, printing a summary that must
be identical for the original and the restored database."""
import json

from django.contrib.auth.models import Group, User
from django.contrib.contenttypes.models import ContentType
from django.contrib.sessions.models import Session
from django.core.management.base import BaseCommand, CommandError
from django.db import connection

from shop.models import Category, Product, Tag


class Command(BaseCommand):
    def handle(self, *args, **options):
        with connection.cursor() as c:
            if connection.vendor == "sqlite":
                c.execute("PRAGMA foreign_key_check")
                bad = c.fetchall()
                if bad:
                    raise CommandError(f"foreign_key_check: {bad[:5]}")
                c.execute("PRAGMA integrity_check")
                ok = c.fetchone()[0]
                if ok != "ok":
                    raise CommandError(f"integrity_check: {ok}")
        connection.check_constraints()
        summary = {
            "users": sorted(User.objects.values_list("username", flat=True)),
            "editors": sorted(
                Group.objects.get(name="editors").user_set.values_list("username", flat=True)
            ),
            "editor_perms": Group.objects.get(name="editors").permissions.count(),
            "admin_can": User.objects.get(username="admin").has_perm("shop.change_product"),
            "user0_can": User.objects.get(username="user0").has_perm("shop.change_product"),
            "content_types": ContentType.objects.count(),
            "tree": [
                (c.name, c.parent.name if c.parent else None, c.children.count())
                for c in Category.objects.order_by("id")
            ],
            "products": [
                (p.name, str(p.price), p.created.isoformat(), p.available, p.data,
                 p.category.name, p.owner.username, sorted(t.slug for t in p.tags.all()))
                for p in Product.objects.order_by("id").select_related("category", "owner")
            ],
            "tag_products": {t.slug: t.product_set.count() for t in Tag.objects.all()},
            "sessions": [
                Session.objects.get(pk=s.pk).get_decoded() for s in Session.objects.all()
            ],
        }
        self.stdout.write(json.dumps(summary, sort_keys=True))
