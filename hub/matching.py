"""Job classes and the matching rules (decision D8) — the only copy of them.

A job's *class* is what workers match on: its job type and requirements (service type,
component, hardware minima).  The queue is one Redis sorted set per class, so a claim looks at the
head of each class the worker can run — a cost that grows with the number of classes, not with
the number of queued jobs.  Customer restrictions (``allowed_customers``): a job with a customer
also waits in its class's queue for that customer, and a worker restricted to customers claims
from those queues (``store.JobStore.claim``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import orjson

HARDWARE_MINIMA = ("gpu_memory_gb", "cpu_cores", "ram_gb")
_CLASSES: dict[tuple[Any, ...], JobClass] = {}  # JobClass.of's memory


@dataclass(frozen=True)
class JobClass:
    id: str
    job_type: str
    service_type: str | None = None
    component: str | None = None
    gpu_memory_gb: float | None = None
    cpu_cores: int | None = None
    ram_gb: float | None = None

    @classmethod
    def of(cls, job_type: str, requirements: dict[str, Any] | None) -> JobClass:
        req = requirements or {}
        hw = req.get("hardware") or {}
        fields: dict[str, Any] = {
            "job_type": job_type,
            "service_type": req.get("service_type"),
            "component": req.get("component"),
            **{k: hw.get(k) for k in HARDWARE_MINIMA},
        }
        key = tuple(fields.values())  # the same class comes back again and again: made once
        known = _CLASSES.get(key)
        if known is None:
            digest = hashlib.sha1(orjson.dumps(fields, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]
            if len(_CLASSES) >= 10_000:  # bounded: client-chosen job types are unbounded
                _CLASSES.clear()
            known = _CLASSES[key] = cls(id=digest, **fields)
        return known

    def to_json(self) -> bytes:
        return orjson.dumps(self.__dict__)

    @classmethod
    def from_json(cls, raw: bytes | str) -> JobClass:
        return cls(**orjson.loads(raw))

    def summary(self) -> dict[str, Any]:
        """The ``job_available.requirements_summary`` of jobs of this class."""
        out: dict[str, Any] = {}
        if self.service_type is not None:
            out["service_type"] = self.service_type
        if self.component is not None:
            out["component"] = self.component
        if self.gpu_memory_gb is not None:
            out["gpu_memory_min"] = self.gpu_memory_gb
        return out


def can_run(capabilities: dict[str, Any], job_class: JobClass) -> bool:
    """D8, without the per-job customer check (see ``customer_allowed``)."""
    if job_class.service_type is not None and job_class.service_type not in (
        capabilities.get("services") or ()
    ):
        return False
    if job_class.component is not None and job_class.component not in (capabilities.get("components") or ()):
        return False
    hardware = capabilities.get("hardware") or {}
    for key in HARDWARE_MINIMA:
        minimum = getattr(job_class, key)
        if minimum is not None:
            have = hardware.get(key)
            if not isinstance(have, (int, float)) or isinstance(have, bool) or have < minimum:
                return False
    return True


def customer_allowed(capabilities: dict[str, Any], customer_id: str | None) -> bool:
    allowed = capabilities.get("allowed_customers")
    return allowed is None or (customer_id is not None and customer_id in allowed)
