"""The base of every shop management command: one language per run.

A command answers (its output, its errors, its --help) in one language:
the one `--lang` names, else the language already active (a caller's
translation.override around call_command), else settings.LANGUAGE_CODE —
which is what `manage.py <command>` gets."""

from django.conf import settings
from django.core.management.base import BaseCommand
from django.utils import translation
from django.utils.translation import gettext_lazy as _


def command_languages() -> list[str]:
    return [code for code, _name in settings.LANGUAGES]


def _lang_in_argv(argv: list[str]) -> str | None:
    """The --lang of a command line, read before argparse runs (it prints
    --help while parsing, before the command could switch language)."""
    for i, arg in enumerate(argv):
        if arg == "--lang" and i + 1 < len(argv):
            value = argv[i + 1]
        elif arg.startswith("--lang="):
            value = arg.partition("=")[2]
        else:
            continue
        return value if value in command_languages() else None
    return None


class ShopCommand(BaseCommand):
    """BaseCommand with `--lang`: subclass it instead of BaseCommand, and mark
    every message (gettext for output, gettext_lazy for `help` and argument
    help) for translation."""

    def create_parser(self, prog_name, subcommand, **kwargs):
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        # argparse wraps the description with re, which needs a str, not a lazy one.
        parser.description = str(self.help) if self.help else None
        parser.add_argument(
            "--lang",
            choices=command_languages(),
            help=_("language of the command's messages (default: settings.LANGUAGE_CODE)"),
        )
        return parser

    def run_from_argv(self, argv):
        with translation.override(_lang_in_argv(argv) or _language_now()):
            super().run_from_argv(argv)

    def execute(self, *args, **options):
        with translation.override(options.get("lang") or _language_now()):
            return super().execute(*args, **options)


def _language_now() -> str:
    # The caller's active language; with none active, get_language() gives LANGUAGE_CODE.
    return translation.get_language() or settings.LANGUAGE_CODE
