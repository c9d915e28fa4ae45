"""Security headers sent with every response, by the app and by the server's own error pages."""

from __future__ import annotations

#: The page loads its own script and stylesheet only (no inline script), images from MyAnimeList, and talks to
#: this server; nothing may frame it. API answers are JSON, which these headers keep from being sniffed as HTML.
CONTENT_SECURITY_POLICY = "; ".join([
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data: https://myanimelist.net https://*.myanimelist.net",
    "connect-src 'self'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
])

SECURITY_HEADERS: dict[str, str] = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}
