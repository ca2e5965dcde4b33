"""Catalog's settings (env: SAMTAL_CATALOG_*), read by every module of the service."""

from __future__ import annotations

from chassis.settings import ServiceSettings, service_config


class Settings(ServiceSettings):
    model_config = service_config("catalog")  # env: SAMTAL_CATALOG_*
    service: str = "catalog"
