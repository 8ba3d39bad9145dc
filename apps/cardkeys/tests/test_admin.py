import pytest
from django.contrib.auth.models import Permission, User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from apps.cardkeys import import_jobs
from apps.cardkeys.models import CardKey, KeyBatch, KeyImportChunk, KeyImportJob
from apps.catalog.tests.factories import ProductFactory
from testing.admin_forms import admin_form_values

from .factories import CardKeyFactory

pytestmark = pytest.mark.django_db


def upload_url(product):
    return reverse("admin:catalog_product_upload_keys", args=[product.pk])


# --- upload -------------------------------------------------------------------


def test_product_page_links_to_the_upload_page(admin_client):
    product = ProductFactory()
    page = admin_client.get(reverse("admin:catalog_product_change", args=[product.pk]))
    assert page.status_code == 200
    assert upload_url(product) in page.content.decode()
    assert admin_client.get(upload_url(product)).status_code == 200


def finished_job(admin_client, product, data: dict) -> KeyImportJob:
    """Posts the upload form, follows the redirect to the job, and runs the job
    as the worker would (in-process: these tests need no worker)."""
    response = admin_client.post(upload_url(product), data)
    assert response.status_code == 302, response.content.decode()[:2000]
    job = KeyImportJob.objects.get()
    assert response["Location"] == reverse("admin:cardkeys_keyimportjob_change", args=[job.pk])
    return import_jobs.cardkeys_import_job_run(job_id=job.pk)


@pytest.mark.django_db(transaction=True)
def test_pasted_keys_are_imported_and_reported(admin_client, admin_user):
    product = ProductFactory()
    CardKeyFactory(product=product, secret="STORED-1")
    pasted = "PASTE-1\r\n\r\n PASTE-2 \r\nSTORED-1\r\nPASTE-1\r\nBAD\x07KEY\r\n"
    job = finished_job(admin_client, product, {"keys": pasted, "column": ""})
    assert (job.stored_count, job.duplicate_count, job.refused_count) == (2, 2, 1)
    html = admin_client.get(reverse("admin:cardkeys_keyimportjob_change", args=[job.pk])).content.decode()
    assert "import-report" in html and "4, 5" in html and "line 6" in html
    assert "2 keys imported" in html
    batch = job.batch
    assert batch.uploaded_by == admin_user and batch.product == product
    secrets = sorted(key.secret for key in CardKey.objects.filter(batch=batch))
    assert secrets == ["PASTE-1", "PASTE-2"]


@pytest.mark.django_db(transaction=True)
def test_the_import_report_warns_of_keys_another_product_holds(admin_client):
    other = ProductFactory(sku="ADM-OTHER")
    for secret in ("DUP-A", "DUP-B", "DUP-C"):
        CardKeyFactory(product=other, secret=secret)
    product = ProductFactory(sku="ADM-HERE")
    pasted = "NEW-1\nDUP-A\nNEW-2\nDUP-C\nDUP-B\n"
    job = finished_job(admin_client, product, {"keys": pasted, "column": ""})
    assert job.stored_count == 5  # imported all the same
    assert job.report["elsewhere"] == 3 and job.report["elsewhere_lines"] == [2, 4, 5]
    html = admin_client.get(reverse("admin:cardkeys_keyimportjob_change", args=[job.pk])).content.decode()
    assert "elsewhere-warning" in html
    assert "Warning: 3 imported keys already exist in other products (ADM-OTHER), lines 2, 4, 5." in html


@pytest.mark.django_db(transaction=True)
def test_uploaded_csv_file_with_a_column_name(admin_client):
    product = ProductFactory()
    upload = SimpleUploadedFile("keys.csv", "序号,激活,备注\n1,CSV-A,x\n2,CSV-B,y\n".encode("utf-8-sig"))
    assert finished_job(admin_client, product, {"file": upload, "column": "激活"}).stored_count == 2
    assert sorted(key.secret for key in CardKey.objects.filter(product=product)) == ["CSV-A", "CSV-B"]


@pytest.mark.django_db(transaction=True)
def test_uploaded_text_file(admin_client):
    product = ProductFactory()
    upload = SimpleUploadedFile("keys.txt", b"TXT-1\nTXT-2\nTXT-3\n")
    assert finished_job(admin_client, product, {"file": upload}).stored_count == 3


@pytest.mark.django_db(transaction=True)
def test_refused_file_shows_the_reason_and_stores_nothing(admin_client):
    product = ProductFactory()
    upload = SimpleUploadedFile("keys.txt", "K-1\nK-2\n".encode("utf-16"))
    job = finished_job(admin_client, product, {"file": upload})
    assert job.status == "failed"
    assert "UTF-8" in admin_client.get(reverse("admin:cardkeys_keyimportjob_change", args=[job.pk])).content.decode()
    assert not CardKey.objects.exists() and not KeyBatch.objects.exists()


def test_bad_extension_is_refused(admin_client):
    product = ProductFactory()
    page = admin_client.post(upload_url(product), {"file": SimpleUploadedFile("keys.xlsx", b"K-1\n")})
    assert ".txt and .csv" in page.content.decode()
    assert not CardKey.objects.exists() and not KeyImportJob.objects.exists()


def test_column_name_for_a_text_file_is_refused_in_the_request(admin_client):
    product = ProductFactory()
    page = admin_client.post(upload_url(product), {"file": SimpleUploadedFile("k.txt", b"K-1\n"), "column": "code"})
    assert page.status_code == 200 and "only applies to .csv" in page.content.decode()
    assert not KeyImportJob.objects.exists()


def test_neither_or_both_inputs_is_a_form_error(admin_client):
    product = ProductFactory()
    empty = admin_client.post(upload_url(product), {"keys": "  "})
    both = admin_client.post(upload_url(product), {"keys": "K-1", "file": SimpleUploadedFile("k.txt", b"K-2\n")})
    for page in (empty, both):
        assert page.context["form"].errors
    assert not CardKey.objects.exists()
    assert not KeyImportJob.objects.exists() and not KeyImportChunk.objects.exists()


def test_staff_without_key_permission_cannot_upload(client):
    product = ProductFactory()
    staff = User.objects.create_user("clerk", password="pw-123456", is_staff=True)
    staff.user_permissions.add(Permission.objects.get(codename="change_product"))
    client.force_login(staff)
    assert client.post(upload_url(product), {"keys": "K-1"}).status_code == 403
    assert not KeyImportJob.objects.exists()
    assert (
        upload_url(product)
        not in client.get(reverse("admin:catalog_product_change", args=[product.pk])).content.decode()
    )
    assert not CardKey.objects.exists()


# --- product list -------------------------------------------------------------


def test_product_list_shows_key_counts_without_a_query_per_product(admin_client):
    first = ProductFactory(sku="COUNT-A")
    for _ in range(3):
        CardKeyFactory(product=first)
    void = CardKeyFactory(product=first, status=CardKey.Status.VOID)
    CardKeyFactory(sold=True, product=first)
    url = reverse("admin:catalog_product_changelist")
    admin_client.get(url)  # the shop settings (the admin's header) are read once, then cached

    with CaptureQueriesContext(connection) as one_product:
        page = admin_client.get(url)
    row = next(r for r in page.context["cl"].result_list if r.pk == first.pk)
    assert (row.n_available, row.n_sold, row.n_void) == (3, 1, 1)
    assert void.pk

    for _ in range(5):
        CardKeyFactory(product=ProductFactory())
    with CaptureQueriesContext(connection) as six_products:
        admin_client.get(url)
    assert len(six_products) == len(one_product)


def test_product_change_page_shows_sale_state_and_counts_read_only(admin_client):
    product = ProductFactory()
    CardKeyFactory(product=product)
    page = admin_client.get(reverse("admin:catalog_product_change", args=[product.pk]))
    html = page.content.decode()
    assert 'name="sku"' in html and 'name="sale_starts_at_0"' in html
    assert "field-keys_available" in html and "field-sale_state" in html
    assert 'name="keys_available"' not in html


def test_product_edit_through_the_admin_saves(admin_client):
    product = ProductFactory(title="Old title")
    change = reverse("admin:catalog_product_change", args=[product.pk])
    data = admin_form_values(admin_client, change)
    data["title_zh_hans"] = "New title"
    response = admin_client.post(change, data)
    assert response.status_code == 302, response.context["adminform"].form.errors if response.context else ""
    product.refresh_from_db()
    assert product.title_zh_hans == "New title"


# --- card keys: masked only ----------------------------------------------------


def test_key_list_shows_masked_secrets_only(admin_client):
    product = ProductFactory()
    keys = [CardKeyFactory(product=product, secret=f"ABCD-PLAIN-{n}-TAIL") for n in range(3)]
    CardKeyFactory(sold=True, product=product, secret="SOLD-PLAIN-TAIL")
    html = admin_client.get(reverse("admin:cardkeys_cardkey_changelist")).content.decode()
    assert "ABCD****" in html and "SOLD****" in html
    assert "PLAIN" not in html
    assert keys[0].secret_encrypted not in html


def test_key_page_is_read_only_and_masked(admin_client):
    key = CardKeyFactory(secret="WXYZ-PLAIN-SECRET")
    url = reverse("admin:cardkeys_cardkey_change", args=[key.pk])
    page = admin_client.get(url)
    html = page.content.decode()
    assert page.status_code == 200
    assert "WXYZ****" in html and "PLAIN" not in html and key.secret_encrypted not in html
    assert 'name="status"' not in html
    assert admin_client.post(url, {"status": "void"}).status_code == 403
    key.refresh_from_db()
    assert key.status == CardKey.Status.AVAILABLE
    assert admin_client.get(reverse("admin:cardkeys_cardkey_add")).status_code == 403


def test_key_search_by_the_whole_key(admin_client):
    wanted = CardKeyFactory(secret="FIND-ME-123")
    CardKeyFactory(secret="OTHER-456")
    page = admin_client.get(reverse("admin:cardkeys_cardkey_changelist"), {"q": " FIND-ME-123 "})
    assert [key.pk for key in page.context["cl"].result_list] == [wanted.pk]


def test_void_and_unvoid_actions_never_touch_sold_keys(admin_client):
    product = ProductFactory()
    available = CardKeyFactory(product=product)
    sold = CardKeyFactory(sold=True, product=product)
    url = reverse("admin:cardkeys_cardkey_changelist")

    admin_client.post(url, {"action": "void_keys", "_selected_action": [available.pk, sold.pk]})
    available.refresh_from_db(), sold.refresh_from_db()
    assert (available.status, sold.status) == ("void", "sold")

    admin_client.post(url, {"action": "unvoid_keys", "_selected_action": [available.pk, sold.pk]})
    available.refresh_from_db(), sold.refresh_from_db()
    assert (available.status, sold.status) == ("available", "sold")


def test_batches_are_read_only(admin_client):
    batch = CardKeyFactory().batch
    assert admin_client.get(reverse("admin:cardkeys_keybatch_changelist")).status_code == 200
    assert admin_client.get(reverse("admin:cardkeys_keybatch_add")).status_code == 403
    assert admin_client.post(reverse("admin:cardkeys_keybatch_change", args=[batch.pk]), {}).status_code == 403
