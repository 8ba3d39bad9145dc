"""An upload waiting for its import job, encrypted in MariaDB (KeyImportChunk).

The admin request writes the upload here as it arrives (StagingWriter, fed by
EncryptingUploadHandler) and the worker reads it back (StagedUpload). Blocks
are Fernet tokens under CARDKEY_ENCRYPTION_KEYS, like the stored keys: the
plaintext is never on disk, neither in the temp directory nor in the
database, and a web node and a worker on different machines share it.
"""

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.core.files.uploadhandler import FileUploadHandler, StopUpload
from django.db import DEFAULT_DB_ALIAS, connections

from .crypto import cardkey_fernet
from .models import KeyImportChunk

# 1 MiB blocks: a 200 MiB upload is 200 rows of ~1.4 MB (well under MariaDB's
# max_allowed_packet), and the reader holds one block at a time.
BLOCK_BYTES = 1024 * 1024


class StagingWriter:
    """Appends an upload to a job's staging rows, one encrypted block at a time.
    Each block is committed alone (autocommit): a request that dies leaves rows
    that the reaper removes with their job (cardkeys_import_jobs_reap)."""

    def __init__(self, *, job_id: int):
        self._job_id = job_id
        self._encrypt = cardkey_fernet().encrypt
        self._buffer = bytearray()
        self._seq = 0
        self.size = 0

    def write(self, data: bytes) -> None:
        self._buffer += data
        self.size += len(data)
        while len(self._buffer) >= BLOCK_BYTES:
            self._flush(bytes(self._buffer[:BLOCK_BYTES]))
            del self._buffer[:BLOCK_BYTES]

    def close(self) -> int:
        """Writes what is left; returns the upload's size in bytes."""
        if self._buffer:
            self._flush(bytes(self._buffer))
            self._buffer.clear()
        return self.size

    def _flush(self, block: bytes) -> None:
        KeyImportChunk.objects.create(job_id=self._job_id, seq=self._seq, token=self._encrypt(block))
        self._seq += 1


class StagingLost(Exception):
    """A job's staged upload ended before its recorded size."""


class StagedUpload:
    """A job's staged upload as a binary stream (`read` only, what the reader
    uses), decrypting one block at a time. `position` counts bytes read.

    It reads on a connection of its own: the import's KeyStore stores chunks
    on the caller's connection from a helper thread while the caller reads on.
    Call close() when done."""

    def __init__(self, *, job_id: int, size: int):
        self._job_id = job_id
        self._size = size
        self._fernet = cardkey_fernet()
        self._connection = connections.create_connection(DEFAULT_DB_ALIAS)
        self._next_seq = 0
        self._block = b""
        self._offset = 0
        self._loaded = 0
        self.position = 0

    def read(self, size: int = -1) -> bytes:
        parts, wanted = [], size if size >= 0 else float("inf")
        while wanted > 0:
            if self._offset >= len(self._block) and not self._load_next():
                break
            part = self._block[self._offset : self._offset + int(min(wanted, len(self._block) - self._offset))]
            self._offset += len(part)
            wanted -= len(part)
            parts.append(part)
        data = b"".join(parts)
        self.position += len(data)
        return data

    def close(self) -> None:
        self._connection.close()

    def _load_next(self) -> bool:
        table = self._connection.ops.quote_name(KeyImportChunk._meta.db_table)
        with self._connection.cursor() as cursor:
            cursor.execute(f"SELECT token FROM {table} WHERE job_id = %s AND seq = %s", [self._job_id, self._next_seq])
            row = cursor.fetchone()
        if row is None:
            if self._loaded < self._size:
                # Deleted under the reader (the job was failed meanwhile): a
                # short read must not pass for the end of the file.
                raise StagingLost(f"import job {self._job_id}: staged upload gone after {self.position} bytes")
            return False
        token = row[0]
        self._block, self._offset = self._fernet.decrypt(bytes(token)), 0
        self._loaded += len(self._block)
        self._next_seq += 1
        return True


class StagedUploadedFile(UploadedFile):
    """What request.FILES holds for a staged upload: its name, size and job, no content."""

    def __init__(self, *, name: str, size: int, job_id: int, content_type: str | None, charset: str | None):
        super().__init__(file=None, name=name, content_type=content_type, size=size, charset=charset)
        self.job_id = job_id

    def open(self, mode=None):  # noqa: ARG002 - the content is in the job's staging rows
        raise ValueError("A staged upload is read through apps.cardkeys.staging.StagedUpload.")


class EncryptingUploadHandler(FileUploadHandler):
    """Takes the place of Django's memory and temp-file handlers for the key
    upload: each file field's data is encrypted into a new job's staging rows
    as it arrives. `new_job(file_name)` makes that job and returns its id.

    Over CARDKEY_IMPORT_MAX_BYTES (a client that sent no honest Content-Length)
    the upload stops, and `too_large` says so."""

    def __init__(self, *, new_job, request=None):
        super().__init__(request)
        self._new_job = new_job
        self._writer: StagingWriter | None = None
        self._job_id: int | None = None
        self.job_ids: list[int] = []
        self.too_large = False

    def new_file(self, *args, **kwargs):
        super().new_file(*args, **kwargs)
        self._job_id = self._new_job(self.file_name or "")
        self.job_ids.append(self._job_id)
        self._writer = StagingWriter(job_id=self._job_id)

    def receive_data_chunk(self, raw_data, start):
        if start + len(raw_data) > settings.CARDKEY_IMPORT_MAX_BYTES:
            self.too_large = True
            raise StopUpload(connection_reset=True)
        self._writer.write(raw_data)
        return None  # no later handler sees the data

    def file_complete(self, file_size):
        size = self._writer.close()
        return StagedUploadedFile(
            name=self.file_name,
            size=size,
            job_id=self._job_id,
            content_type=self.content_type,
            charset=self.charset,
        )
