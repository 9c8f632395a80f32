"""The shipped notification hooks: a generic JSON webhook and a Telegram bot; both standard library only.

Each is a hook (a callable taking an `Event`) that raises `NotifyError` when the receiver did not take the
event, so the dispatcher retries it. Both carry the event's stable `event_id`: the webhook in the body and in
an `Idempotency-Key` header, so a receiver can drop the duplicates an at-least-once delivery may bring.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any, Final

from dtms.config import TELEGRAM_API, NotifyConfig
from dtms.errors import ConfigError, NotifyError
from dtms.events import Event, Hook

#: Telegram refuses longer messages (its Bot API limit).
TELEGRAM_MAX_TEXT: Final = 4096


def _post(url: str, body: dict[str, Any], timeout_s: float, headers: dict[str, str], what: str) -> bytes:
    request = urllib.request.Request(  # noqa: S310  # the scheme is checked by the config or the caller
        url,
        data=json.dumps(body, separators=(",", ":")).encode(),
        method="POST",
        headers={"Content-Type": "application/json", "User-Agent": "dtms", **headers},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310
            data: bytes = response.read()
            return data
    except urllib.error.HTTPError as exc:
        detail = exc.read()[:200].decode(errors="replace")
        raise NotifyError(f"{what}: HTTP {exc.code} {exc.reason}: {detail}") from None
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        raise NotifyError(f"{what}: {reason}") from None


def _http_url(url: str) -> str:
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"notifier URL must be http:// or https://, not {url!r}")
    return url


class Webhook:
    """POSTs `Event.to_json()` (event_id, kind, at, epoch, fields, text); any 2xx answer is delivery."""

    def __init__(self, url: str, *, timeout_s: float = 5.0, name: str = "webhook") -> None:
        self.url = _http_url(url)
        self.timeout_s = timeout_s
        self.name = name

    def __call__(self, event: Event) -> None:
        headers = {"Idempotency-Key": event.event_id} if event.event_id else {}
        _post(self.url, event.to_json(), self.timeout_s, headers, f"webhook {self.url}")

    def __repr__(self) -> str:
        return f"Webhook({self.url!r})"


class Telegram:
    """Sends `Event.text()` to one chat through the Bot API's sendMessage; `ok: false` is a failure."""

    def __init__(
        self,
        token: str,
        chat_id: str,
        *,
        api_url: str = TELEGRAM_API,
        timeout_s: float = 5.0,
        name: str = "telegram",
    ) -> None:
        if not token or not chat_id:
            raise ConfigError("a Telegram notifier needs a bot token and a chat id")
        self._token = token
        self.chat_id = chat_id
        self.api_url = _http_url(api_url).rstrip("/")
        self.timeout_s = timeout_s
        self.name = name

    def __call__(self, event: Event) -> None:
        body = {"chat_id": self.chat_id, "text": event.text()[:TELEGRAM_MAX_TEXT], "disable_notification":
                event.kind not in ("alert", "state_transition", "rail_changed")}  # fmt: skip
        url = f"{self.api_url}/bot{self._token}/sendMessage"
        # The token is part of the URL: error messages name the API, never the URL.
        answer = _post(url, body, self.timeout_s, {}, f"telegram {self.api_url}")
        try:
            ok = bool(json.loads(answer).get("ok"))
        except (ValueError, AttributeError):
            ok = False
        if not ok:
            said = answer[:200].decode(errors="replace")
            raise NotifyError(f"telegram {self.api_url}: not accepted: {said}")

    def __repr__(self) -> str:  # never the token
        return f"Telegram(chat_id={self.chat_id!r})"


def configured_hooks(config: NotifyConfig) -> list[Hook]:
    """The notifiers `[notify.webhook]` and `[notify.telegram]` switch on (none by default)."""
    hooks: list[Hook] = []
    if config.webhook.url is not None:
        hooks.append(Webhook(config.webhook.url, timeout_s=config.timeout_s))
    telegram = config.telegram
    if telegram.token is not None and telegram.chat_id is not None:
        hooks.append(
            Telegram(
                telegram.token.get_secret_value(),
                telegram.chat_id,
                api_url=telegram.api_url,
                timeout_s=config.timeout_s,
            )
        )
    return hooks


__all__ = ["TELEGRAM_MAX_TEXT", "Telegram", "Webhook", "configured_hooks"]
