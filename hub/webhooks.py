"""Webhooks (spec D21): a job's events POSTed to its ``webhook_url``, signed, durable, retried.

Queueing is not done here: the transition's own Lua script queues the delivery, in the same atomic
step as the transition (``webhook`` in ``lua/prelude.lua``), so a hub killed right after a
transition loses no delivery. This module does the rest:

- at submission, ``job_fields`` checks the URL (scheme, resolved addresses: ``webhook_http``) and
  that a signing secret exists for the job's customer, and returns what the job hash keeps;
- the sender: on each tick ``poll`` claims due deliveries (``lua/webhook_claim.lua``: a lease with
  a deadline, the attempt counted atomically, targets at this hub's bound skipped) up to this
  hub's free slots, and sends each in its own task: the message built from the recorded facts
  (``job_messages.from_facts``, the WebSocket's message), Standard Webhooks headers
  (``empq.webhooks``), one bounded POST; then ``lua/webhook_done.lua`` records the attempt and
  retries it later (timeouts, connection errors, 5xx, 429: exponential backoff with jitter, until
  ``webhook_max_age_s`` after the event) or ends it (2xx; a 3xx or other 4xx; a refused target);
- ``deliveries`` reads a job's delivery log for its status.

Any hub sends any delivery: several hubs share the work, never the same attempt; a hub killed
mid-attempt leaves a lease that runs out, then another hub tries again (at least once).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import Counter
from typing import TYPE_CHECKING, Any

import orjson
from empq.generated.defs.webhook_delivery import WebhookDelivery
from empq.generated.defs.webhook_event import WebhookEvent
from empq.generated.messages.submit_job import SubmitJob
from empq.hub import job_messages, webhook_http
from empq.hub.resp import RedisReplyError
from empq.hub.webhook_http import Answer, Refused

import empq
from empq import protocol
from empq.webhooks import headers as signed_headers

if TYPE_CHECKING:
    from empq.hub.core import HubCore

log = logging.getLogger("empq.hub.webhooks")

DEFAULT_EVENTS = ("completed", "failed", "cancelled", "timeout")  # the final ones
CLAIM_BATCH = 16  # deliveries per claim call
TARGETS_SCANNED = 100  # targets one claim looks at
STATES = {"queued": "pending", "retry": "retrying", "delivered": "delivered", "failed": "failed"}


class WebhookRefused(Exception):
    """A submission's webhook is refused (INVALID_PARAMETERS): ``field``, ``reason``, ``text``."""

    def __init__(self, field: str, reason: str, text: str) -> None:
        super().__init__(text)
        self.field, self.reason, self.text = field, reason, text


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class Webhooks:
    def __init__(self, hub: HubCore) -> None:
        self.hub = hub
        self.config = hub.config
        self.tasks: set[asyncio.Task[None]] = set()
        self.in_flight: Counter[str] = Counter()  # target -> attempts in flight in this hub
        self.lease_ms = int((2 * self.config.webhook_timeout_s + 1) * 1000)
        self._polling = False
        self._more_due = False  # the last claim was full: more may be due

    @property
    def sending(self) -> bool:
        """Does this hub send webhooks (it has slots and a key to sign with)?"""
        return self.config.webhook_concurrency > 0 and bool(self.hub.auth.webhook_keys)

    def supported(self, customer_id: str | None) -> bool:
        """Are a customer's jobs' webhooks signed (a secret exists for them)?"""
        return self.hub.auth.webhook_key(customer_id) is not None

    # submission -------------------------------------------------------------------------------
    async def job_fields(self, msg: SubmitJob, customer_id: str | None) -> dict[str, str]:
        """The job hash fields of a submission's webhook ({} without one); ``WebhookRefused``."""
        url = msg.webhook_url
        if url is None:
            if msg.webhook_events is not None:
                raise WebhookRefused("webhook_events", "no_url", "webhook_events needs webhook_url")
            return {}
        if not self.supported(customer_id):
            raise WebhookRefused(
                "webhook_url",
                "not_configured",
                "this hub has no webhook signing secret (EMPQ_WEBHOOK_SECRET, or the customer's in "
                "the auth file)",
            )
        config = self.config
        try:
            target = webhook_http.parse(url, config.webhook_allow_http)
            async with asyncio.timeout(config.webhook_timeout_s):
                await webhook_http.resolve(target, config.webhook_allow_private)
        except Refused as refused:
            raise WebhookRefused("webhook_url", refused.reason, refused.text) from None
        except TimeoutError:
            text = f"cannot resolve {target.host} within {config.webhook_timeout_s:g} s"
            raise WebhookRefused("webhook_url", "unresolvable", text) from None
        wanted = {event.value for event in msg.webhook_events} if msg.webhook_events else set(DEFAULT_EVENTS)
        events = ",".join(event.value for event in WebhookEvent if event.value in wanted)  # no repeats
        return {"webhook_url": url, "webhook_events": events, "webhook_target": target.key}

    # sending ----------------------------------------------------------------------------------
    async def poll(self) -> int:
        """Claim due deliveries up to this hub's free slots and start them; how many started."""
        if not self.sending or self._polling:
            return 0
        self._polling = True
        started = 0
        try:
            while True:
                want = min(CLAIM_BATCH, self.config.webhook_concurrency - len(self.tasks))
                if want <= 0:
                    break
                claimed = await self._claim(want)
                for delivery_id, attempt, facts in claimed:
                    task = asyncio.get_running_loop().create_task(self._attempt(delivery_id, attempt, facts))
                    self.tasks.add(task)
                    task.add_done_callback(self.tasks.discard)
                started += len(claimed)
                self._more_due = len(claimed) == want
                if not self._more_due:
                    break
        finally:
            self._polling = False
        return started

    async def _claim(self, want: int) -> list[tuple[str, int, dict[str, str]]]:
        busy: list[Any] = []
        for target, n in self.in_flight.items():
            if n > 0:
                busy += (target, n)
        store = self.hub.store
        reply = await store.batch.script(
            "webhook_claim",
            [store.key("whq")],
            [
                now_ms(),
                self.lease_ms,
                want,
                store.p,
                self.config.webhook_per_target,
                TARGETS_SCANNED,
                *busy,
            ],
        )
        out, i = [], 0
        while i < len(reply):
            n = int(reply[i + 2])
            values = reply[i + 3 : i + 3 + n]
            facts = dict(zip(values[0::2], values[1::2], strict=True))
            out.append((str(reply[i]), int(reply[i + 1]), facts))
            self.in_flight[facts.get("target", "")] += 1
            i += 3 + n
        return out

    async def _attempt(self, delivery_id: str, attempt: int, facts: dict[str, str]) -> None:
        target = facts.get("target", "")
        try:
            answer = await self._send(delivery_id, facts)
        except Exception as exc:  # a record that cannot become a message: nothing to retry
            log.exception("webhook %s: cannot be sent", delivery_id)
            answer = Answer(None, f"cannot build the message: {type(exc).__name__}", refused=True)
        finally:
            self.in_flight[target] -= 1
            if self.in_flight[target] <= 0:
                del self.in_flight[target]
        try:
            await self._record(delivery_id, attempt, facts, answer)
        except Exception as exc:  # Redis unreachable: the lease runs out and the delivery is tried again
            log.warning("webhook %s attempt %d: outcome not recorded (%s)", delivery_id, attempt, exc)
        if self._more_due:  # a backlog: take the next one now rather than at the next tick
            try:
                await self.poll()
            except (RedisReplyError, OSError) as exc:
                log.debug("webhook claim failed: %s", exc)

    async def _send(self, delivery_id: str, facts: dict[str, str]) -> Answer:
        config = self.config
        key = self.hub.auth.webhook_key(facts.get("customer_id") or None)
        if key is None:
            return Answer(
                None, f"hub {self.hub.hub_id} has no webhook signing secret for this job", refused=True
            )
        try:
            target = webhook_http.parse(facts["url"], config.webhook_allow_http)
        except Refused as refused:
            return Answer(None, refused.text, refused=True)
        body = protocol.encode(job_messages.from_facts(facts))
        headers = {
            "Content-Type": "application/json",
            "User-Agent": f"empq-hub/{empq.__version__}",
            **signed_headers(key, delivery_id, body),
        }
        return await webhook_http.post(
            target, headers, body, config.webhook_timeout_s, config.webhook_allow_private
        )

    async def _record(self, delivery_id: str, attempt: int, facts: dict[str, str], answer: Answer) -> None:
        config, metrics, store = self.config, self.hub.metrics, self.hub.store
        now = now_ms()
        status = answer.status
        next_at = 0
        if status is not None and 200 <= status < 300:
            outcome = "delivered"
        elif answer.refused or (status is not None and status < 500 and status != 429):
            outcome = "failed"
        else:
            delay = min(config.webhook_retry_max_s, config.webhook_retry_base_s * 2 ** (attempt - 1))
            delay *= 0.5 + random.random() / 2  # equal jitter: hubs and jobs do not retry in step
            if answer.retry_after is not None:
                delay = max(delay, min(answer.retry_after, config.webhook_retry_max_s))
            next_at = now + int(delay * 1000)
            expires = int(facts.get("at") or now) + int(config.webhook_max_age_s * 1000)
            outcome = "retry" if next_at <= expires else "expired"
        entry: dict[str, Any] = {
            "id": delivery_id,
            "event": facts.get("event"),
            "attempt": attempt,
            "at": now,
            "outcome": outcome,
            "duration_ms": int(answer.duration * 1000),
        }
        if status is not None:
            entry["status_code"] = status
        if answer.error:
            entry["error"] = answer.error
        if outcome == "retry":
            entry["next_at"] = next_at
        job_id = facts.get("job_id", "")
        await store.batch.script(
            "webhook_done",
            [
                store.key(f"whd:{delivery_id}"),
                store.key(f"whq:{facts.get('target', '')}"),
                store.key("whq"),
                store.key(f"whlog:{job_id}"),
                store.job_key(job_id),
            ],
            [delivery_id, attempt, outcome, next_at, orjson.dumps(entry), facts.get("target", "")],
        )
        metrics.webhook_attempt(outcome, answer.duration)
        if outcome == "delivered":
            metrics.webhook_delivered(max(0.0, (now - int(facts.get("at") or now)) / 1000))
        where = facts.get("target", "?")
        if outcome in ("failed", "expired"):
            log.warning(
                "webhook %s (%s of job %s) to %s %s after %d attempt(s): %s",
                delivery_id,
                facts.get("event"),
                job_id,
                where,
                outcome,
                attempt,
                answer.error,
                extra={"event": f"webhook_{outcome}", "job_id": job_id},
            )
        else:
            log.debug(
                "webhook %s attempt %d to %s: %s (%s)", delivery_id, attempt, where, outcome, answer.error
            )

    async def stop(self, grace: float = 2.0) -> None:
        """Let attempts in flight finish for a moment; the rest are cancelled (their leases run
        out and another hub, or this one restarted, tries again)."""
        if self.tasks:
            await asyncio.wait(list(self.tasks), timeout=grace)
        for task in list(self.tasks):
            task.cancel()
        if self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)

    # status -----------------------------------------------------------------------------------
    async def deliveries(self, job_id: str) -> list[WebhookDelivery]:
        """The job's deliveries, oldest first, from its log (the latest entries)."""
        entries = await self.hub.store.batch.command("LRANGE", self.hub.store.key(f"whlog:{job_id}"), 0, -1)
        found: dict[str, dict[str, Any]] = {}
        for raw in entries:
            entry = orjson.loads(raw)
            delivery = found.setdefault(
                entry["id"], {"webhook_id": entry["id"], "event": entry["event"], "attempts": []}
            )
            outcome = entry["outcome"]
            delivery["state"] = STATES.get(outcome, outcome)
            if outcome == "queued":
                delivery["queued_at"] = int(entry["at"])
                continue
            delivery.pop("next_attempt_at", None)
            if "next_at" in entry:
                delivery["next_attempt_at"] = int(entry["next_at"])
            delivery["attempts"].append(
                {k: entry[k] for k in ("attempt", "at", "status_code", "error", "duration_ms") if k in entry}
            )
        return [WebhookDelivery.model_validate(d) for d in found.values()]
