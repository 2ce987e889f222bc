"""``ModelSpec``: one pool member, local (llama.cpp) or API (LiteLLM), as a plain serialisable value."""

from __future__ import annotations

import os
from types import ModuleType
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

# Local prices: US$ per million tokens, proportional to parameter count (0.10 in / 0.40 out per 1B
# parameters). They make cost a usable objective between local models; change them per pool.
LOCAL_PRICE_IN_PER_B_PARAMS = 0.10
LOCAL_PRICE_OUT_PER_B_PARAMS = 0.40


class ModelSpec(BaseModel):
    """A model the optimizer may assign to a step. ``name`` is the DSPy model string and cache key, so
    two configurations of one model need two names."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="DSPy model string, e.g. 'local/smollm2-135m' or 'openai/gpt-4o-mini'")
    provider: Literal["local", "litellm"]
    gguf: str | None = Field(None, description="embedded model key ('smollm2', 'gemma3') or a .gguf path")
    chat: bool = Field(True, description="local only: use the chat template (False: plain completion)")
    params_b: float | None = Field(None, description="parameters in billions (for local default prices)")
    n_ctx: int = 2048
    max_tokens: int = 256
    temperature: float = 0.0
    api_base: str | None = Field(None, description="API base URL (never a key: keys come from the env)")
    schema_style: Literal["json_schema", "json_object", "none"] = Field(
        "json_schema", description="how the output schema is sent: OpenAI's json_schema, the "
        "{'type': 'json_object', 'schema': ...} dialect of llama.cpp's server, or not at all")
    price_in: float | None = Field(None, description="US$ per million input tokens (None: LiteLLM's map)")
    price_out: float | None = Field(None, description="US$ per million output tokens")

    @field_validator("api_base")
    @classmethod
    def _no_credentials_in_url(cls, value: str | None) -> str | None:
        if value:
            url = urlsplit(value)
            if url.username or url.password or url.query or url.fragment:
                raise ValueError("api_base must not carry user info, a query or a fragment (where credentials "
                                 "hide); set the provider's key in the environment")
        return value

    def prices(self) -> tuple[float | None, float | None]:
        """(input, output) US$ per million tokens, local defaults derived from ``params_b``."""
        if self.price_in is not None or self.provider != "local":
            return self.price_in, self.price_out
        size = self.params_b or 0.0
        return size * LOCAL_PRICE_IN_PER_B_PARAMS, size * LOCAL_PRICE_OUT_PER_B_PARAMS


SMOLLM2 = ModelSpec(name="local/smollm2-135m", provider="local", gguf="smollm2", chat=True, params_b=0.135)
GEMMA3 = ModelSpec(name="local/gemma3-270m", provider="local", gguf="gemma3", chat=False, params_b=0.270)
EMBEDDED_SPECS = {spec.name: spec for spec in (SMOLLM2, GEMMA3)}


def import_litellm() -> ModuleType:
    """LiteLLM, imported with its bundled price map: by default importing LiteLLM downloads the map from
    GitHub (an endpoint nobody configured, reached while an artifact is only being validated, and seconds of
    retries offline). A user who wants the download sets ``LITELLM_LOCAL_MODEL_COST_MAP=False``."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm

    return litellm


def known_model_name(text: str) -> str:
    """``text`` if it is an embedded model or a LiteLLM ``provider/model`` string whose provider LiteLLM knows
    (a mistyped name would otherwise become an API model whose failing calls spend the budget)."""
    if text in EMBEDDED_SPECS:
        return text
    provider, sep, model = text.partition("/")
    if sep and model and provider != "local" and provider in {
            str(getattr(p, "value", p)) for p in import_litellm().provider_list}:
        return text
    raise ValueError(f"unknown model {text!r}: use an embedded model ({', '.join(EMBEDDED_SPECS)}) or a LiteLLM "
                     "provider/model string such as openai/gpt-4o-mini")
