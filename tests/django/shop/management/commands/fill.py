"""Fill the database with a little of everything (deterministic)."""
import datetime
from decimal import Decimal

from django.contrib.auth.models import Group, Permission, User
from django.contrib.sessions.backends.db import SessionStore
from django.core.management.base import BaseCommand

from shop.models import Category, Product, Tag, Tagging


class Command(BaseCommand):
    def handle(self, *args, **options):
        editors = Group.objects.create(name="editors")
        editors.permissions.set(Permission.objects.filter(codename__contains="product"))
        admin = User.objects.create_superuser("admin", "admin@example.com", "pw")
        users = [User.objects.create_user(f"user{i}", f"u{i}@example.com", "pw") for i in range(5)]
        for u in users[:3]:
            u.groups.add(editors)
        root = Category.objects.create(name="root")
        books = Category.objects.create(name="books", parent=root)
        scifi = Category.objects.create(name="sci-fi", parent=books)
        tags = [Tag.objects.create(slug=s, label=s.title()) for s in ["new", "sale", "rare"]]
        t0 = datetime.datetime(2024, 1, 1, 12, 0, 0, 123456, tzinfo=datetime.timezone.utc)
        for i in range(20):
            p = Product.objects.create(
                name=f"product {i}",
                price=Decimal(f"{i}.{i % 100:02d}"),
                created=t0 + datetime.timedelta(hours=i),
                available=i % 3 != 0,
                data={"i": i, "nested": {"list": [1, 2, i]}},
                category=[root, books, scifi][i % 3],
                owner=[admin, *users][i % 6],
            )
            for t in tags[: i % 4]:
                Tagging.objects.create(product=p, tag=t, weight=i)
        # Deleted rows leave gaps the restored sequences must skip.
        Product.objects.filter(name="product 19").delete()
        s = SessionStore()
        s["user"] = admin.pk
        s.create()
        self.stdout.write("filled")
