from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

from .crypto import decrypt_secret, mask_secret


class KeyBatch(models.Model):
    """One upload of keys by a merchant, with what became of its lines."""

    product = models.ForeignKey(
        "catalog.Product", on_delete=models.PROTECT, related_name="key_batches", verbose_name=_("product")
    )
    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("uploaded by"),
    )
    source_name = models.CharField(_("source"), max_length=255, blank=True)
    created_at = models.DateTimeField(_("uploaded at"), auto_now_add=True)
    accepted_count = models.PositiveIntegerField(_("accepted"), default=0)
    duplicate_count = models.PositiveIntegerField(_("duplicates"), default=0)
    invalid_count = models.PositiveIntegerField(_("invalid"), default=0)

    class Meta:
        ordering = ["-id"]
        verbose_name = _("key batch")
        verbose_name_plural = _("key batches")

    def __str__(self):
        return f"#{self.pk} {self.product.sku} +{self.accepted_count}"


class CardKey(models.Model):
    """One sellable key. The secret is stored only as a Fernet token."""

    class Status(models.TextChoices):
        AVAILABLE = "available", _("available")
        SOLD = "sold", _("sold")
        VOID = "void", _("void")
        # Sold, then its order was refunded: withdrawn for good, never sold
        # again nor counted available; it keeps the order it went to.
        REVOKED = "revoked", _("revoked")

    product = models.ForeignKey(
        "catalog.Product", on_delete=models.PROTECT, related_name="card_keys", verbose_name=_("product")
    )
    batch = models.ForeignKey(
        KeyBatch, on_delete=models.PROTECT, related_name="card_keys", null=True, blank=True, verbose_name=_("batch")
    )
    # Fernet token (ASCII) of the secret; see apps.cardkeys.crypto.
    secret_encrypted = models.TextField(_("encrypted secret"), db_collation="ascii_bin")
    # HMAC-SHA256 (hex) of the normalised secret: duplicate detection without plaintext.
    # ascii_bin: the unique index compares bytes, not Unicode collation weights,
    # and is a quarter of the size; that is most of an import's lookup cost.
    fingerprint = models.CharField(_("fingerprint"), max_length=64, db_collation="ascii_bin")
    status = models.CharField(_("status"), max_length=10, choices=Status.choices, default=Status.AVAILABLE)
    order = models.ForeignKey(
        "orders.Order",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="card_keys",
        verbose_name=_("order"),
    )
    sold_at = models.DateTimeField(_("sold at"), null=True, blank=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        ordering = ["id"]
        verbose_name = _("card key")
        verbose_name_plural = _("card keys")
        constraints = [
            models.UniqueConstraint(fields=["product", "fingerprint"], name="cardkey_unique_per_product"),
            # A sold (or revoked) key names its order; an unsold key names none.
            models.CheckConstraint(
                condition=(
                    models.Q(status__in=["sold", "revoked"], order__isnull=False)
                    | (~models.Q(status__in=["sold", "revoked"]) & models.Q(order__isnull=True))
                ),
                name="cardkey_sold_iff_order",
            ),
        ]
        indexes = [
            models.Index(fields=["product", "status", "id"], name="cardkey_claim_idx"),
            # An import looks its keys up in every product (the warning about
            # keys another product holds); the unique index starts with product.
            models.Index(fields=["fingerprint"], name="cardkey_fingerprint_idx"),
        ]

    def __str__(self):
        return f"{self.product_id}:{self.masked_secret}"

    @property
    def secret(self) -> str:
        return decrypt_secret(self.secret_encrypted)

    @property
    def masked_secret(self) -> str:
        return mask_secret(self.secret)


class KeyImportJob(models.Model):
    """An admin upload imported in the background: its progress while it runs,
    its report once it ends. The upload waits, encrypted, in KeyImportChunk rows
    until then; they are deleted when the job ends, fails or is reaped."""

    class Status(models.TextChoices):
        RECEIVING = "receiving", _("receiving the upload")
        QUEUED = "queued", _("waiting for a worker")
        RUNNING = "running", _("importing")
        DONE = "done", _("done")
        FAILED = "failed", _("failed")

    product = models.ForeignKey(
        "catalog.Product", on_delete=models.PROTECT, related_name="+", verbose_name=_("product")
    )
    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("uploaded by"),
    )
    source_name = models.CharField(_("source"), max_length=255, blank=True)
    column = models.CharField(_("CSV column"), max_length=100, blank=True)
    # The merchant's language: refusal reasons are written in it by the worker.
    language = models.CharField(_("language"), max_length=16, blank=True)
    status = models.CharField(_("status"), max_length=10, choices=Status.choices, default=Status.RECEIVING)
    size_bytes = models.BigIntegerField(_("size"), default=0)
    bytes_read = models.BigIntegerField(_("bytes read"), default=0)
    lines_read = models.PositiveIntegerField(_("lines read"), default=0)
    stored_count = models.PositiveIntegerField(_("stored"), default=0)
    duplicate_count = models.PositiveIntegerField(_("duplicates"), default=0)
    refused_count = models.PositiveIntegerField(_("refused"), default=0)
    # How many times a worker started it: a file that kills its worker is not retried forever.
    attempts = models.PositiveSmallIntegerField(_("attempts"), default=0)
    # MariaDB CONNECTION_ID() of the session importing it: while that session
    # lives, another delivery of the job's message leaves it alone.
    runner_connection_id = models.PositiveBigIntegerField(_("importing database session"), null=True, blank=True)
    batch = models.ForeignKey(
        KeyBatch, on_delete=models.SET_NULL, null=True, blank=True, related_name="+", verbose_name=_("batch")
    )
    # The final report: first duplicate line numbers, first refused lines with reasons.
    report = models.JSONField(_("report"), default=dict, blank=True)
    error = models.TextField(_("error"), blank=True)
    created_at = models.DateTimeField(_("uploaded at"), auto_now_add=True)
    started_at = models.DateTimeField(_("started at"), null=True, blank=True)
    finished_at = models.DateTimeField(_("finished at"), null=True, blank=True)
    # Moved by every progress write: a job whose heartbeat stops is reaped.
    heartbeat_at = models.DateTimeField(_("last sign of life"), auto_now_add=True)

    class Meta:
        ordering = ["-id"]
        verbose_name = _("key import")
        verbose_name_plural = _("key imports")
        indexes = [models.Index(fields=["status", "heartbeat_at"], name="keyimportjob_reap_idx")]

    def __str__(self):
        return f"#{self.pk} {self.source_name or '-'}"

    @property
    def finished(self) -> bool:
        return self.status in (self.Status.DONE, self.Status.FAILED)


class KeyImportChunk(models.Model):
    """One block of an upload waiting for its import job, as a Fernet token
    (CARDKEY_ENCRYPTION_KEYS): the plaintext never rests on disk."""

    job = models.ForeignKey(KeyImportJob, on_delete=models.CASCADE, related_name="chunks", verbose_name=_("key import"))
    seq = models.PositiveIntegerField(_("sequence number"))
    token = models.BinaryField(_("encrypted block"))

    class Meta:
        ordering = ["job", "seq"]
        constraints = [models.UniqueConstraint(fields=["job", "seq"], name="keyimportchunk_unique_seq")]
        verbose_name = _("key import block")
        verbose_name_plural = _("key import blocks")

    def __str__(self):
        return f"{self.job_id}:{self.seq}"
