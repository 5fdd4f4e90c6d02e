"""The ``http`` collector: one GET per target per cycle; status, latency, body, TLS expiry.

``OPSWATCH_HTTP_TARGETS``
    ``name=URL`` list, e.g. ``api=http://127.0.0.1:8000/health,web=https://example.org/``.
    The URL is a secret: only its masked form (password and query values hidden) appears
    in labels, logs and ``describe()``. Credentials in the URL are sent as basic auth.
``OPSWATCH_HTTP_TIMEOUT`` (default ``5s``)
    Whole-request deadline: DNS, connect, TLS, headers and body.
``OPSWATCH_HTTP_EXPECT_STATUS`` (default ``2xx,3xx``)
    Comma list of codes (``200,204``) or classes (``2xx``) that count as up.
Per target (``<TARGET>`` = the name upper-cased, ``-`` as ``_``):
``OPSWATCH_HTTP_<TARGET>_TIMEOUT``, ``OPSWATCH_HTTP_<TARGET>_EXPECT_STATUS`` override the
above; ``OPSWATCH_HTTP_<TARGET>_BODY_CONTAINS`` is a case-sensitive substring the body must
hold (matched on UTF-8 bytes within the first MiB); ``OPSWATCH_HTTP_<TARGET>_TLS_VERIFY``
(default true) set to false accepts a self-signed or expired certificate (``tls_days_left``
still reports it).

Samples, labelled ``{target, url}``: ``http.up`` (1 only when a response came with an
expected status and, if asked, a matching body), ``http.status_code``,
``http.latency_seconds`` (to the end of the body, monotonic clock), ``http.body_matched``
(only with ``BODY_CONTAINS``) and ``http.tls_days_left`` (https: the served certificate's
notAfter minus now). A refused connection, a DNS failure, a TLS failure or a timeout is
``http.up = 0``, never an exception.

Every check opens a fresh connection (``force_close``), so latency always includes connect and
TLS handshake and the certificate read is the one served now; redirects are followed (the
final response counts); cookies are not kept between checks.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import ClassVar
from urllib.parse import quote, urlsplit

import aiohttp
import structlog

from opswatch.config import PREFIX, ConfigError, Env, Target, target_variable
from opswatch.model import Clock, Sample

from .base import up_sample

log = structlog.get_logger(__name__)

KIND = "http"
ENV_PREFIX = f"{PREFIX}HTTP_"
TARGETS = f"{ENV_PREFIX}TARGETS"
DEFAULT_TIMEOUT = 5.0
DEFAULT_EXPECT_STATUS = "2xx,3xx"
MAX_BODY_BYTES = 1024 * 1024
USER_AGENT = "opswatch-http-check"


# --- configuration ---------------------------------------------------------------------


def parse_status_list(name: str, value: str) -> frozenset[int]:
    """``200,204`` or ``2xx,301``: the set of status codes that count as up."""
    codes: set[int] = set()
    items = [item.strip().lower() for item in value.split(",") if item.strip()]
    if not items:
        raise ConfigError(name, f"expected status codes such as 200,204 or 2xx, got {value!r}")
    for item in items:
        if len(item) == 3 and item.endswith("xx") and item[0] in "12345":
            base = int(item[0]) * 100
            codes.update(range(base, base + 100))
        elif item.isdigit() and 100 <= int(item) <= 599:
            codes.add(int(item))
        else:
            raise ConfigError(
                name, f"expected status codes (100-599) or classes such as 2xx, got {item!r}"
            )
    return frozenset(codes)


@dataclass(frozen=True, slots=True)
class HttpSettings:
    target: Target
    timeout: float
    expect_status: frozenset[int]
    #: the status list as configured, for ``describe()``
    expect_status_text: str
    body_contains: str | None
    tls_verify: bool

    @classmethod
    def from_env(
        cls, env: Env, target: Target, *, timeout: float, expect_status: str
    ) -> HttpSettings:
        def variable(option: str) -> str:
            return target_variable(KIND, target.name, option)

        status_text = env.string(variable("EXPECT_STATUS"), expect_status)
        return cls(
            target=target,
            timeout=env.duration(variable("TIMEOUT"), timeout, minimum=0.001),
            expect_status=parse_status_list(variable("EXPECT_STATUS"), status_text),
            expect_status_text=status_text,
            body_contains=env.raw(variable("BODY_CONTAINS")),
            tls_verify=env.boolean(variable("TLS_VERIFY"), True),
        )


# --- certificates ----------------------------------------------------------------------


def _der_element(data: bytes, pos: int) -> tuple[int, int, int]:
    """The DER element at ``pos``: (tag, content start, content end)."""
    if pos + 2 > len(data):
        raise ValueError("truncated DER")
    tag, length = data[pos], data[pos + 1]
    pos += 2
    if length & 0x80:
        size = length & 0x7F
        if not 1 <= size <= 4 or pos + size > len(data):
            raise ValueError("bad DER length")
        length = int.from_bytes(data[pos : pos + size], "big")
        pos += size
    if pos + length > len(data):
        raise ValueError("truncated DER")
    return tag, pos, pos + length


def certificate_not_after(der: bytes) -> datetime:
    """``notAfter`` of an X.509 certificate in DER (RFC 5280 4.1), as aware UTC.

    Read from the binary form because ``SSLObject.getpeercert()`` returns an empty dict when
    verification is off, and the stdlib has no public DER decoder.
    """
    tag, start, _ = _der_element(der, 0)  # Certificate
    if tag != 0x30:
        raise ValueError("not a certificate")
    tag, pos, _ = _der_element(der, start)  # tbsCertificate
    if tag != 0x30:
        raise ValueError("not a certificate")
    tag, _, end = _der_element(der, pos)
    if tag == 0xA0:  # [0] version, optional
        tag, _, end = _der_element(der, end)
    for _field in ("signature", "issuer", "validity"):  # skip serialNumber, then the next two
        tag, pos, end = _der_element(der, end)
    if tag != 0x30:
        raise ValueError("no validity in certificate")
    _, _, not_before_end = _der_element(der, pos)
    tag, start, end = _der_element(der, not_before_end)
    text = der[start:end].decode("ascii")
    if tag == 0x17:  # UTCTime YYMMDDHHMMSSZ; RFC 5280: YY >= 50 is 19YY
        year = int(text[:2])
        text = f"{1900 + year if year >= 50 else 2000 + year}{text[2:]}"
    elif tag != 0x18:  # GeneralizedTime YYYYMMDDHHMMSSZ
        raise ValueError("unknown time type in certificate")
    return datetime.strptime(text, "%Y%m%d%H%M%SZ").replace(tzinfo=UTC)


class _CertRecordingSSLObject(ssl.SSLObject):
    def do_handshake(self) -> None:
        super().do_handshake()  # raises SSLWantReadError until the handshake completes
        context = self.context
        if isinstance(context, CertRecordingContext):
            context.last_peer_der = self.getpeercert(binary_form=True)


class CertRecordingContext(ssl.SSLContext):
    """A client TLS context that remembers the certificate of its last completed handshake.

    aiohttp gives no public access to the TLS connection once a response is in: a small body
    arrives with the headers and the connection is released before ``resp.connection`` can be
    read (verified with aiohttp 3.14). asyncio builds every TLS connection with
    ``context.wrap_bio()``, which instantiates ``context.sslobject_class`` (a documented
    hook), so ours records the peer certificate of the very connection the check used, at no
    extra cost. One context per collector; reset ``last_peer_der`` before each request.
    """

    sslobject_class = _CertRecordingSSLObject
    last_peer_der: bytes | None = None

    @classmethod
    def client(cls, *, verify: bool) -> CertRecordingContext:
        context = cls(ssl.PROTOCOL_TLS_CLIENT)  # hostname check and CERT_REQUIRED on
        if verify:
            context.load_default_certs(ssl.Purpose.SERVER_AUTH)
        else:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    def peer_not_after(self) -> datetime | None:
        if not self.last_peer_der:
            return None
        try:
            return certificate_not_after(self.last_peer_der)
        except (ValueError, IndexError):
            return None


# --- errors ----------------------------------------------------------------------------


def describe_error(exc: BaseException, url: str, display: str, timeout: float) -> str:
    """``ClassName: message`` with the URL, its password and its query masked out."""
    if isinstance(exc, TimeoutError) and not str(exc):
        return f"TimeoutError: no complete response within {timeout:g}s"
    message = f"{type(exc).__name__}: {exc}"
    parts = urlsplit(url)
    secrets = [url]
    if parts.password:
        secrets += [parts.password, quote(parts.password, safe="")]
    if parts.query:
        secrets.append(parts.query)
    for secret in secrets:
        message = message.replace(secret, display if secret == url else "***")
    return message


# --- the collector ---------------------------------------------------------------------


class HttpCollector:
    """One HTTP(S) target; check name ``http:<target>``."""

    name: ClassVar[str] = KIND

    def __init__(self, settings: HttpSettings, clock: Clock) -> None:
        self.settings = settings
        self.check = f"{KIND}:{settings.target.name}"
        self._clock = clock
        self._labels = {"target": settings.target.name, "url": str(settings.target.url)}
        self._session: aiohttp.ClientSession | None = None
        self._https = urlsplit(settings.target.url.reveal()).scheme == "https"
        #: https targets only, built on first use: a context with the system trust store costs
        #: ~25 ms and ~450 KiB, so plain http targets share aiohttp's default contexts
        self._tls: CertRecordingContext | None = None

    @classmethod
    def from_env(cls, env: Env, clock: Clock) -> Sequence[HttpCollector]:
        targets = env.targets(TARGETS)
        if not targets:
            raise ConfigError(TARGETS, "set at least one name=URL target to enable http checks")
        timeout = env.duration(f"{ENV_PREFIX}TIMEOUT", DEFAULT_TIMEOUT, minimum=0.001)
        expect = env.string(f"{ENV_PREFIX}EXPECT_STATUS", DEFAULT_EXPECT_STATUS)
        parse_status_list(f"{ENV_PREFIX}EXPECT_STATUS", expect)  # blame the global variable
        return tuple(
            cls(HttpSettings.from_env(env, t, timeout=timeout, expect_status=expect), clock)
            for t in targets
        )

    def describe(self) -> dict[str, str]:
        s = self.settings
        info = {
            "target": s.target.name,
            "url": str(s.target.url),
            "timeout": f"{s.timeout:g}s",
            "expect_status": s.expect_status_text,
            "tls_verify": "true" if s.tls_verify else "false",
        }
        if s.body_contains is not None:
            info["body_contains"] = s.body_contains
        return info

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _new_session(self) -> aiohttp.ClientSession:
        tls: ssl.SSLContext | bool = self.settings.tls_verify
        if self._https:
            self._tls = await asyncio.to_thread(
                CertRecordingContext.client, verify=self.settings.tls_verify
            )
            tls = self._tls
        return aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=tls, force_close=True),
            cookie_jar=aiohttp.DummyCookieJar(),
            headers={"User-Agent": USER_AGENT},
            raise_for_status=False,
            timeout=aiohttp.ClientTimeout(total=None),  # asyncio.timeout below is the deadline
        )

    async def collect(self) -> list[Sample]:
        at = self._clock()
        settings = self.settings
        if self._session is None:
            self._session = await self._new_session()
        url = settings.target.url.reveal()
        if self._tls is not None:
            self._tls.last_peer_der = None
        started = time.monotonic()
        try:
            async with (
                asyncio.timeout(settings.timeout),
                self._session.get(url, allow_redirects=True) as resp,
            ):
                body = await self._read_body(resp)
                latency = time.monotonic() - started
                status = resp.status
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            error = describe_error(exc, url, str(settings.target.url), settings.timeout)
            log.debug("http_check_failed", check=self.check, error=error)
            return [up_sample(KIND, self.check, False, at, dict(self._labels))]

        needle = settings.body_contains
        matched = None if needle is None else needle.encode() in body
        up = status in settings.expect_status and matched is not False
        samples = [
            up_sample(KIND, self.check, up, at, dict(self._labels)),
            self._sample("status_code", status, at),
            self._sample("latency_seconds", latency, at),
        ]
        if matched is not None:
            samples.append(self._sample("body_matched", 1.0 if matched else 0.0, at))
        not_after = self._tls.peer_not_after() if self._tls is not None else None
        if not_after is not None:
            days_left = (not_after - at).total_seconds() / 86400
            samples.append(self._sample("tls_days_left", days_left, at))
        return samples

    async def _read_body(self, resp: aiohttp.ClientResponse) -> bytes:
        """Read the body to its end (latency covers it), at most ``MAX_BODY_BYTES``; keep it
        only when it must be searched."""
        keep = self.settings.body_contains is not None
        body = bytearray()
        read = 0
        async for chunk in resp.content.iter_chunked(64 * 1024):
            read += len(chunk)
            if keep:
                body += chunk
            if read >= MAX_BODY_BYTES:
                break
        return bytes(body)

    def _sample(self, metric: str, value: float, at: datetime) -> Sample:
        return Sample(self.check, f"{KIND}.{metric}", float(value), at, dict(self._labels))
