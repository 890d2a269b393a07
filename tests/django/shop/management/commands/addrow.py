"""Create rows without ids: the restored sequences must hand out new ones."""
import datetime

from django.contrib.auth.models import User
from django.core.management.base import BaseCommand

from shop.models import Category, Product


class Command(BaseCommand):
    def handle(self, *args, **options):
        u = User.objects.create_user("after-restore")
        c = Category.objects.create(name="after-restore", parent=Category.objects.get(name="root"))
        p = Product.objects.create(
            name="after", price="1.00", created=datetime.datetime.now(datetime.timezone.utc),
            category=c, owner=u,
        )
        self.stdout.write(f"{u.pk} {c.pk} {p.pk}")
