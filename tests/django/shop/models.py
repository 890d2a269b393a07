from django.conf import settings
from django.db import models


class Category(models.Model):
    """A tree: the self-referencing foreign key."""

    name = models.CharField(max_length=50, unique=True)
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.CASCADE, related_name="children"
    )


class Tag(models.Model):
    """A text primary key."""

    slug = models.SlugField(primary_key=True)
    label = models.CharField(max_length=50)


class Product(models.Model):
    name = models.CharField(max_length=100)
    price = models.DecimalField(max_digits=10, decimal_places=2)
    created = models.DateTimeField()
    available = models.BooleanField(default=True)
    data = models.JSONField(default=dict)
    category = models.ForeignKey(Category, on_delete=models.PROTECT)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
    tags = models.ManyToManyField(Tag, through="Tagging")


class Tagging(models.Model):
    """The many-to-many through table."""

    product = models.ForeignKey(Product, on_delete=models.CASCADE)
    tag = models.ForeignKey(Tag, on_delete=models.CASCADE)
    weight = models.IntegerField(default=1)

    class Meta:
        unique_together = [("product", "tag")]
