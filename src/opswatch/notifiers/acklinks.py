"""One-click ack links: a signed, expiring token naming one alert episode.

With ``OPSWATCH_EXTERNAL_URL`` set, every firing notification carries
``<OPSWATCH_EXTERNAL_URL>/ack/<token>``. The token is
``<fingerprint>.<started_at in µs>.<expires at, s>.<signature>``, the signature an
HMAC-SHA256 of the rest under the link key, base64url. So a token

* cannot be made or changed without the key (a forged or edited one is refused);
* names its alert *episode* (fingerprint and start): once that alert resolves, the next
  firing of the same fingerprint is another episode and the link is useless for it;
* expires ``OPSWATCH_ACK_LINK_TTL`` (default 24 h) after the notification was rendered
  (every reminder carries a fresh one).

The key is ``OPSWATCH_ACK_LINK_KEY`` (secret, ``_FILE`` allowed, at least 16 characters) or,
without it, derived from ``OPSWATCH_API_TOKEN`` (HMAC-SHA256 of a fixed label under the
token, so the token itself never signs anything): changing the key or that token voids
every link sent. Links need one of the two.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

from opswatch.config import PREFIX, ConfigError, Env, Secret
from opswatch.model import Alert

EXTERNAL_URL_VAR = f"{PREFIX}EXTERNAL_URL"
KEY_VAR = f"{PREFIX}ACK_LINK_KEY"
TTL_VAR = f"{PREFIX}ACK_LINK_TTL"
#: the shortest ``OPSWATCH_ACK_LINK_KEY`` accepted
MIN_KEY_CHARS = 16
#: what the author of an ack made through a link is called in the alert history
AUTHOR = "link"
_LABEL = b"opswatch ack link v1"
_DERIVE_LABEL = b"opswatch ack link key v1"
_TOKEN = re.compile(r"([0-9a-f]{1,64})\.(\d{1,20})\.(\d{1,12})\.([A-Za-z0-9_-]{43})", re.ASCII)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: never in a base URL: it goes into HTML, Slack's <url|text> links and mail text as it is
_UNSAFE = re.compile(r"[\s\x00-\x1f\x7f<>|\"'\\`]")


class LinkError(Exception):
    """A token that is malformed, forged or expired; ``str()`` says which, for the caller."""


@dataclass(frozen=True, slots=True)
class Episode:
    """What a valid token names: one firing of one alert."""

    fingerprint: str
    started_at: datetime

    def of(self, alert: Alert) -> bool:
        """Whether ``alert`` is this episode (same fingerprint, same start)."""
        return alert.fingerprint == self.fingerprint and alert.started_at == self.started_at


@dataclass(frozen=True, slots=True)
class AckLinks:
    """Makes and checks ack link tokens under one key."""

    base_url: str
    key: Secret
    ttl_s: float = 86400.0

    @classmethod
    def from_env(cls, env: Env) -> AckLinks | None:
        """From ``OPSWATCH_EXTERNAL_URL`` (None when unset), ``OPSWATCH_ACK_LINK_KEY`` or
        ``OPSWATCH_API_TOKEN``, and ``OPSWATCH_ACK_LINK_TTL``."""
        raw_url = env.raw(EXTERNAL_URL_VAR)
        key = env.secret(KEY_VAR)
        ttl = env.duration(TTL_VAR, 86400.0, minimum=60.0)
        if raw_url is None:
            return None
        base_url = _external_url(raw_url)
        if key is not None and len(key.reveal()) < MIN_KEY_CHARS:
            raise ConfigError(KEY_VAR, f"expected at least {MIN_KEY_CHARS} characters")
        if key is None:
            token = env.secret(f"{PREFIX}API_TOKEN")
            if token is None:
                raise ConfigError(
                    EXTERNAL_URL_VAR,
                    f"ack links need a key: set {KEY_VAR} (or {PREFIX}API_TOKEN to derive one)",
                )
            derived = hmac.new(token.reveal().encode(), _DERIVE_LABEL, hashlib.sha256)
            key = env.keep(Secret(derived.hexdigest()))
        return cls(base_url, key, ttl)

    def url(self, alert: Alert, now: datetime) -> str:
        """The link for ``alert``'s episode, valid for ``ttl_s`` from ``now``."""
        return f"{self.base_url}/ack/{self.token(alert, now)}"

    def token(self, alert: Alert, now: datetime) -> str:
        expires = int((now + timedelta(seconds=self.ttl_s)).timestamp())
        body = f"{alert.fingerprint}.{_micros(alert.started_at)}.{expires}"
        return f"{body}.{self._sign(body)}"

    def verify(self, token: str, now: datetime) -> Episode:
        """The episode ``token`` names; :class:`LinkError` when it is not one of ours or
        has expired."""
        match = _TOKEN.fullmatch(token)
        if match is None:
            raise LinkError("this ack link is not valid")
        fingerprint, started, expires, signature = match.groups()
        body = f"{fingerprint}.{started}.{expires}"
        if not hmac.compare_digest(signature, self._sign(body)):
            raise LinkError("this ack link is not valid")
        if now.timestamp() >= int(expires):
            raise LinkError("this ack link has expired")
        try:
            started_at = _EPOCH + timedelta(microseconds=int(started))
        except OverflowError:  # signed by us, so never: but never a 500 either
            raise LinkError("this ack link is not valid") from None
        return Episode(fingerprint, started_at)

    def describe(self) -> dict[str, object]:
        return {"external_url": self.base_url, "ttl_s": self.ttl_s, "key": str(self.key)}

    def _sign(self, body: str) -> str:
        digest = hmac.new(self.key.reveal().encode(), _LABEL + b"|" + body.encode(), hashlib.sha256)
        return base64.urlsafe_b64encode(digest.digest()).decode().rstrip("=")


def _micros(moment: datetime) -> int:
    delta = moment.astimezone(UTC) - _EPOCH
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


def _external_url(raw: str) -> str:
    if _UNSAFE.search(raw):
        raise ConfigError(EXTERNAL_URL_VAR, "a URL cannot hold spaces, quotes, <, >, | or \\")
    # the checks of every URL variable (scheme, host, port), on a throwaway reader: the
    # external URL is no secret
    Env({EXTERNAL_URL_VAR: raw}).url(EXTERNAL_URL_VAR, schemes=("http", "https"), hide_path=False)
    parts = urlsplit(raw)
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ConfigError(
            EXTERNAL_URL_VAR, "expected the daemon's base URL, without a query, fragment or login"
        )
    return raw.rstrip("/")
