"""Who is asking the hub's HTTP API, what their role lets them do, and the account routes:
login (rate-limited, hashing in its own bounded pool), logout, accounts, API tokens, audit."""

from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from hub.accounts import SESSION_TTL_S, AccountError, Accounts, Principal, Role
from hub.login_guard import LoginGuard, LoginRefused

SESSION_COOKIE = "mb_session"


class Login(BaseModel):
    name: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=256)


class NewUser(Login):
    role: Role
    display: str = Field(default="", max_length=64)


class NewToken(BaseModel):
    name: str = Field(min_length=1, max_length=64)
    role: Role


def accounts_of(request: Request) -> Accounts:
    accounts = request.app.state.hub.accounts
    assert accounts is not None
    return accounts  # type: ignore[no-any-return]


def principal(request: Request) -> Principal | None:
    """A machine client's bearer token, or a person's session cookie."""
    auth = request.headers.get("authorization", "")
    if auth[:7].lower() == "bearer ":
        return accounts_of(request).token(auth[7:].strip())
    cookie = request.cookies.get(SESSION_COOKIE)
    return accounts_of(request).session(cookie) if cookie else None


def require(role: Role, *also: Role) -> Any:
    """A dependency: the caller has ``role`` (or one above it), or one of the roles ``also``."""
    def check(request: Request) -> Principal:
        who = principal(request)
        if who is None:
            raise HTTPException(401, "login required (需要登录)")
        if not who.has(role) and who.role not in also:
            raise HTTPException(403, f"this needs the {role} role; you are {who.role} (权限不足)")
        return who
    return Depends(check)


def accounts_router(guard: LoginGuard, cookie_secure: bool | None) -> APIRouter:
    """``cookie_secure``: the session cookie's Secure flag; None sets it when the request came
    over HTTPS (directly, or from a TLS terminator uvicorn trusts for X-Forwarded-Proto)."""
    router = APIRouter()

    @router.post("/api/login")
    async def login(request: Request, body: Login) -> JSONResponse:
        address = request.client.host if request.client else "?"
        try:
            guard.check(body.name, address)
            token, who = await guard.hash_in_pool(accounts_of(request).login, body.name, body.password)
        except LoginRefused as exc:
            return JSONResponse({"detail": str(exc)}, status_code=exc.status,
                                headers={"Retry-After": str(exc.retry_after_s)})
        except AccountError as exc:
            guard.failed(body.name, address)
            raise HTTPException(401, f"{exc} (用户名或密码错误)") from None
        guard.succeeded(body.name)
        response = JSONResponse({"name": who.name, "role": who.role})
        secure = request.url.scheme == "https" if cookie_secure is None else cookie_secure
        response.set_cookie(SESSION_COOKIE, token, max_age=SESSION_TTL_S, httponly=True, samesite="strict",
                            secure=secure)
        return response

    @router.post("/api/logout")
    def logout(request: Request) -> JSONResponse:
        cookie = request.cookies.get(SESSION_COOKIE)
        if cookie:
            accounts_of(request).logout(cookie)
        response = JSONResponse({"ok": True})
        response.delete_cookie(SESSION_COOKIE)
        return response

    @router.get("/api/me")
    def me(who: Principal = require("volunteer", "kiosk")) -> dict[str, str]:
        return {"name": who.name, "role": who.role, "kind": who.kind}

    @router.get("/api/users")
    def users(request: Request, who: Principal = require("admin")) -> list[dict[str, Any]]:
        return accounts_of(request).users()

    @router.post("/api/users", status_code=201)
    def add_user(request: Request, body: NewUser, who: Principal = require("admin")) -> dict[str, str]:
        accounts_of(request).add_user(body.name, body.password, body.role, body.display, actor=who.actor)
        return {"name": body.name, "role": body.role}

    @router.post("/api/tokens", status_code=201)
    def add_token(request: Request, body: NewToken, who: Principal = require("admin")) -> dict[str, str]:
        """A token for a machine client, shown this once."""
        return {"name": body.name, "role": body.role,
                "token": accounts_of(request).create_token(body.name, body.role, actor=who.actor)}

    @router.delete("/api/tokens/{name:path}")  # :path, so that a name with '/' can be revoked too
    def revoke_token(request: Request, name: str, who: Principal = require("admin")) -> dict[str, bool]:
        accounts_of(request).revoke_token(name, actor=who.actor)
        return {"ok": True}

    @router.get("/api/audit")
    def audit(request: Request, target: str | None = None, limit: int = Query(200, ge=1, le=10_000),
              who: Principal = require("supervisor")) -> list[dict[str, Any]]:
        return accounts_of(request).audit_trail(target, limit)

    return router
