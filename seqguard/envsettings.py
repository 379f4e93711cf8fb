"""The base of seqguard's environment settings (the service's SEQGUARD_*, the load tests' SEQGUARD_LT_*).

pydantic-settings reads the variables (`env_prefix` + the field name, any case; complex fields as JSON, unless a
field is marked `NoDecode` and splits its own text); this base only adds what both users need on top:
- the environment is the only source (no .env file, no secrets folder): a service behaves as its variables say;
- empty variables are ignored, as if unset (`SEQGUARD_REDIS_URL=` in a compose file means "not set");
- `from_env(env)` reads a given mapping instead of os.environ (tests, and the load-test runner's own round trip);
- a bad value fails with one message naming every offending variable and why, never a traceback.
"""

from __future__ import annotations

import contextvars
import os
from collections.abc import Mapping
from typing import ClassVar, Self

from pydantic import ValidationError
from pydantic_settings import BaseSettings, EnvSettingsSource, PydanticBaseSettingsSource, SettingsConfigDict
from pydantic_settings import SettingsError as _SourceError
from pydantic_settings.sources.utils import parse_env_vars

from seqguard.configfile import TOP_LEVEL, field_errors

# The mapping `from_env` reads; None = os.environ. A context variable, so concurrent reads cannot mix mappings.
_ENV: contextvars.ContextVar[Mapping[str, str] | None] = contextvars.ContextVar("seqguard_settings_env", default=None)


class _EnvSource(EnvSettingsSource):
    def _load_env_vars(self) -> Mapping[str, str | None]:
        env = _ENV.get()
        return parse_env_vars(os.environ if env is None else env, self.case_sensitive, self.env_ignore_empty,
                              self.env_parse_none_str)


class EnvSettings(BaseSettings):
    """Subclasses set `env_prefix` in their model_config (and keep extra="forbid", frozen=True from here), and may
    name their error class and what they are for the message: `<error>("invalid <what>: VAR: reason; ...")`."""

    model_config = SettingsConfigDict(extra="forbid", frozen=True, env_ignore_empty=True)
    error: ClassVar[type[ValueError]] = ValueError
    what: ClassVar[str] = "settings"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, _EnvSource(settings_cls)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Self:
        """The settings from `env` (default: os.environ). Raises `cls.error` naming every offending variable."""
        prefix = str(cls.model_config.get("env_prefix", "")).upper()
        token = _ENV.set(env)
        try:
            return cls()
        except ValidationError as e:
            # A problem across fields (a model validator) has no single variable to name.
            names = {TOP_LEVEL: f"{prefix}* settings"}
            problems = "; ".join(f"{names.get(p['field'], prefix + p['field'].upper())}: {p['reason']}"
                                 for p in field_errors(e))
            raise cls.error(f"invalid {cls.what}: {problems}") from None
        except _SourceError as e:  # pydantic-settings could not even read a variable
            raise cls.error(f"invalid {cls.what}: {e}") from None
        finally:
            _ENV.reset(token)
