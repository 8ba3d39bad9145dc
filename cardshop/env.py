"""The one place settings read the environment.

Every variable has a working local default in base.py; production.py insists
on the ones that must never fall back to a default.
"""

from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
# A local .env file is optional; the process environment always wins over it.
_env_file = BASE_DIR / ".env"
if _env_file.exists():
    environ.Env.read_env(str(_env_file), overwrite=False)
