from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("orders", "0004_keys_emailed_at"),
    ]

    operations = [
        # "key" is the product sold; these are the buyer identities the limits count.
        migrations.RenameField(model_name="order", old_name="buyer_keys", new_name="buyer_identities"),
    ]
