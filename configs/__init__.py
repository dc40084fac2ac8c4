"""Pydantic configuration models, the YAML loader and the presets beside them."""

from configs.loader import ConfigError, config_hash, load_config, load_config_text
from configs.schema import SimConfig

__all__ = ["ConfigError", "SimConfig", "config_hash", "load_config", "load_config_text"]
