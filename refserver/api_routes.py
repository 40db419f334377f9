"""The calls a remote CIDX user makes, with canned answers.

Search results are fixed snippets rather than a real index: the client
under test cares about authentication, status codes and body shapes, not
about relevance. Public discovery routes (`/health`, the JWK set and the
protected-resource metadata) live here as well.
"""

from __future__ import annotations

import fnmatch
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from refserver import __version__
from refserver.protected import authenticate, issuer_of
from refserver.state import ServerState
from refserver.validation import Field, check_fields, decoded_body

QUERY_FIELDS = (
    Field("query_text", str, min_length=1, max_length=1000),
    Field("repository_alias", str, required=False, max_length=255),
    Field("limit", int, required=False, ge=1, le=100, default=10),
    Field("min_score", float, required=False, ge=0.0, le=1.0),
    Field("file_extensions", list, required=False),
    Field("search_mode", str, required=False, choices=("semantic", "fts", "hybrid"),
          default="semantic"),
    *(Field(flag, bool, required=False, default=False)
      for flag in ("case_sensitive", "fuzzy", "regex", "time_range_all")),
    Field("edit_distance", int, required=False, ge=0, le=3, default=0),
    Field("snippet_lines", int, required=False, ge=0, le=50, default=5),
    *(Field(text, str, required=False)
      for text in ("language", "path_filter", "exclude_language", "exclude_path",
                   "time_range", "at_commit", "author")),
    Field("accuracy", str, required=False, choices=("fast", "balanced", "high"),
          default="balanced"),
    Field("diff_type", (str, list), required=False),
    Field("chunk_type", str, required=False, choices=("commit_message", "commit_diff")),
)
"""The real server's `SemanticQueryRequest`: its types, limits and defaults. A field
not listed here is ignored, as the real server ignores it."""

# (path, line, snippet, score): one made-up hit list shared by every repository.
_CANNED_HITS = (
    ("src/auth/refresh.py", 42, "def rotate(token: str) -> Session:", 0.93),
    ("src/auth/login.py", 17, "async def login(username: str, password: str) -> Tokens:", 0.86),
    ("web/src/session.ts", 31, "export function storeToken(token: string): void {", 0.74),
    ("docs/authentication.md", 5, "Access tokens live for ten minutes.", 0.61),
    ("src/api/query.py", 88, "def search(query_text: str, limit: int = 10) -> list[Hit]:", 0.52),
)
_LANGUAGE_SUFFIXES = {"python": ".py", "typescript": ".ts", "markdown": ".md"}


class ApiEndpoints:
    """Protected query/repository routes plus the public discovery routes."""

    def __init__(self, state: ServerState) -> None:
        self.state = state

    def routes(self) -> list[Route]:
        """Starlette routes for these endpoints."""
        return [
            Route("/api/query", self.query, methods=["POST"]),
            Route("/api/repos", self.repos, methods=["GET"]),
            Route("/health", self.health, methods=["GET"]),
            Route("/.well-known/jwks.json", self.jwks, methods=["GET"]),
            Route("/.well-known/oauth-protected-resource", self.resource_metadata,
                  methods=["GET"]),
        ]

    async def query(self, request: Request) -> Response:
        """`POST /api/query`: canned search hits in the real response shape."""
        claims = authenticate(self.state, request)
        if isinstance(claims, Response):
            return claims
        # Counted and kept before the checks, so a test can see what a client sent,
        # or that it sent nothing at all.
        self.state.stats.bump("queries")
        self.state.last_query = raw = await decoded_body(request)
        body = check_fields(raw, QUERY_FIELDS, echo_input=True)
        alias = body["repository_alias"]
        known = self.state.config.repositories
        if alias is not None and alias not in known:
            return JSONResponse({"detail": f"Repository '{alias}' not found"}, 404)
        searched = [alias] if alias is not None else list(known)
        results = [hit for repo in searched for hit in _hits(repo, body)]
        results.sort(key=lambda hit: -float(hit["similarity_score"]))
        results = results[: body["limit"]]
        metadata = {"query_text": body["query_text"], "execution_time_ms": 3,
                    "repositories_searched": len(searched), "timeout_occurred": False}
        return JSONResponse({"results": results, "total_results": len(results),
                             "query_metadata": metadata})

    async def repos(self, request: Request) -> Response:
        """`GET /api/repos`: the user's activated repositories."""
        claims = authenticate(self.state, request)
        if isinstance(claims, Response):
            return claims
        since = self.state.accounts_created_at
        repositories = [
            {"user_alias": alias, "golden_repo_alias": alias, "current_branch": "main",
             "activated_at": since, "last_accessed": since}
            for alias in self.state.config.repositories
        ]
        return JSONResponse({"repositories": repositories, "total": len(repositories)})

    async def health(self, request: Request) -> Response:
        """`GET /health`: no authentication; reports the server's (possibly shifted) time."""
        return JSONResponse({"status": "healthy", "timestamp": self.state.clock.iso_now(),
                             "version": __version__, "algorithm": self.state.config.alg})

    async def jwks(self, request: Request) -> Response:
        """`GET /.well-known/jwks.json`: the RS256 public key, or no keys for HS256."""
        return JSONResponse(self.state.tokens.jwks())

    async def resource_metadata(self, request: Request) -> Response:
        """The RFC 9728 document the 401 challenge points at."""
        issuer = issuer_of(self.state, request)
        return JSONResponse({"resource": issuer, "authorization_servers": [issuer],
                             "bearer_methods_supported": ["header"]})


def _hits(repository: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    """The canned hits for one repository that survive the body's filters."""
    hits = []
    suffix = _LANGUAGE_SUFFIXES.get(str(body["language"]).lower()) if body["language"] else None
    for path, line, snippet, score in _CANNED_HITS:
        if body["min_score"] is not None and score < body["min_score"]:
            continue
        if body["language"] and (suffix is None or not path.endswith(suffix)):
            continue
        if body["path_filter"] and not fnmatch.fnmatch(path, body["path_filter"]):
            continue
        hits.append({"file_path": path, "line_number": line, "code_snippet": snippet,
                     "similarity_score": score, "repository_alias": repository})
    return hits
