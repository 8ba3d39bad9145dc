"""How far an import has come: what the batch page's bar and `import_keys` show."""

import time
from dataclasses import dataclass

from django.utils.translation import gettext as _


@dataclass(frozen=True)
class ImportProgress:
    """A snapshot of a running (or finished) import. `bytes_total` is None when
    the size is not known up front (stdin)."""

    bytes_read: int
    bytes_total: int | None
    lines_read: int
    stored: int
    duplicates: int
    refused: int
    elapsed: float

    @property
    def fraction(self) -> float | None:
        if not self.bytes_total:
            return None
        return min(1.0, self.bytes_read / self.bytes_total)

    @property
    def percent(self) -> int | None:
        # Never 100 before the end: the reader runs up to a block (1 MiB) ahead
        # of the lines counted, and the last block still has to be stored.
        fraction = self.fraction
        return None if fraction is None else min(99, int(fraction * 100))

    @property
    def lines_per_second(self) -> float:
        return self.lines_read / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def eta_seconds(self) -> float | None:
        """Seconds left at the rate so far; None until there is a rate to go by."""
        fraction = self.fraction
        if fraction is None or fraction <= 0 or self.elapsed <= 0:
            return None
        return max(0.0, self.elapsed * (1 - fraction) / fraction)


def format_duration(seconds: float | None) -> str:
    """1:05 or 1:02:03; an em dash when unknown."""
    if seconds is None:
        return "—"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"


class ProgressPrinter:
    """`import_keys`' progress on a stream: a bar redrawn in place on a
    terminal, a plain line every PLAIN_INTERVAL seconds otherwise (a log, a
    pipe), and one last line at the end either way. Call it as a
    cardkeys_import progress callback; `position()` says how many bytes the
    import has read."""

    BAR_INTERVAL = 0.2
    PLAIN_INTERVAL = 5.0
    BAR_WIDTH = 30

    def __init__(self, *, out, position, bytes_total: int | None, clock=time.monotonic):
        self._out = out
        self._position = position
        self._bytes_total = bytes_total
        self._clock = clock
        self._started = clock()
        self._last_shown = self._started
        self._tty = _isatty(out)
        self._drawn = False
        self._last: ImportProgress | None = None

    def __call__(self, lines_read: int, report) -> None:
        self._last = ImportProgress(
            bytes_read=self._position(),
            bytes_total=self._bytes_total,
            lines_read=lines_read,
            stored=report.accepted,
            duplicates=report.duplicates,
            refused=report.invalid,
            elapsed=self._clock() - self._started,
        )
        now = self._clock()
        if now - self._last_shown >= (self.BAR_INTERVAL if self._tty else self.PLAIN_INTERVAL):
            self._last_shown = now
            self._show(self._last)

    def finish(self) -> None:
        """The last state, and the line ended on a terminal."""
        if self._last is not None:
            self._show(self._last, final=True)
        elif self._drawn:
            self._out.write("\n")
        self._out.flush()

    def _show(self, progress: ImportProgress, *, final: bool = False) -> None:
        text = describe_progress(progress, final=final)
        if self._tty:
            fraction = 1.0 if final else (progress.fraction or 0.0)
            filled = int(fraction * self.BAR_WIDTH)
            bar = "#" * filled + "-" * (self.BAR_WIDTH - filled)
            self._out.write(f"\r[{bar}] {text}\x1b[K" + ("\n" if final else ""))
            self._drawn = not final
        else:
            self._out.write(text + "\n")
        self._out.flush()


def describe_progress(progress: ImportProgress, *, final: bool = False) -> str:
    percent = 100 if final else progress.percent
    parts = [
        f"{percent:3d}%" if percent is not None else "",
        _("%(lines)d lines read, %(stored)d stored, %(duplicates)d duplicates, %(refused)d refused")
        % {
            "lines": progress.lines_read,
            "stored": progress.stored,
            "duplicates": progress.duplicates,
            "refused": progress.refused,
        },
        _("%(rate)d lines/s") % {"rate": int(progress.lines_per_second)},
    ]
    if final:
        parts.append(_("took %(time)s") % {"time": format_duration(progress.elapsed)})
    else:
        parts.append(_("ETA %(time)s") % {"time": format_duration(progress.eta_seconds)})
    return "  ".join(part for part in parts if part)


def _isatty(out) -> bool:
    try:
        return bool(out.isatty())
    except (AttributeError, ValueError):
        return False


class CountingReader:
    """Wraps a binary stream and counts the bytes read through it."""

    def __init__(self, source):
        self._source = source
        self.position = 0

    def read(self, size: int = -1) -> bytes:
        data = self._source.read(size)
        self.position += len(data)
        return data
