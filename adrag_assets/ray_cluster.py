"""The Ray cluster ``image_embeddings`` runs a big backfill on: a dagster-ray resource.

Imported only when ``ADRAG_RAY_ADDRESS`` is set (dagster-ray is the optional ``ray`` extra),
by :class:`adrag_assets.defs.resources.RayEmbedResource`; Ray itself only when it connects.
"""

from __future__ import annotations

from dagster_ray import RayResource
from pydantic import Field


class RayAtAddress(RayResource):
    """dagster-ray's resource for a cluster reached as Ray's own ``ray.init(address=...)``
    does: ``local`` starts one for the step (stopped at its end), ``auto`` joins the one this
    machine runs (``ray start``), ``HOST:PORT`` or ``ray://HOST:PORT`` a remote one (e.g. a
    KubeRay head's service). Nothing is created or deleted: the cluster's lifecycle is
    Ray's (or KubeRay's); dagster-ray connects, and disconnects after the step."""

    address: str = Field(description="ray.init's address: local, auto, HOST:PORT, ray://...")

    @property
    def ray_address(self) -> str:  # type: ignore[override]
        return self.address

    @property
    def host(self) -> str:
        rest = self.address.removeprefix("ray://")
        return rest.rsplit(":", 1)[0] if ":" in rest else "127.0.0.1"

    @property
    def name(self) -> str:
        return f"Ray cluster at {self.address}"

    @property
    def created(self) -> bool:
        return True

    @property
    def ready(self) -> bool:
        return True
