"""User administration for admins: list, create, disable (every change audited)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path, Request, status
from pydantic import BaseModel, Field

from api.deps import ConnDep
from api.security import AdminUser, actor_of
from gis import users

router = APIRouter(prefix="/users", tags=["users"])
UsernamePath = Annotated[str, Path(description="the user's login name")]


class User(BaseModel):
    id: int
    username: str
    display_name: str | None
    roles: list[str]
    scope_codes: list[str]
    department_id: int | None
    person_id: int | None
    is_active: bool
    is_demo: bool
    created_at: datetime


class NewUser(BaseModel):
    username: str = Field(description="2–64 letters, digits or _ . @ -")
    password: str = Field(min_length=users.MIN_PASSWORD, max_length=1024)
    roles: list[str] = Field(min_length=1, description=f"of {', '.join(users.ROLES)}")
    scope_codes: list[str] = Field(default=[], description="district/street codes; [] = city")
    department_code: str | None = Field(default=None, description="dispatchers' department")
    person_id: int | None = Field(default=None, description="street chiefs' person")
    display_name: str | None = None


@router.get("", response_model=list[User], summary="All users (admins)")
def list_users(conn: ConnDep, _admin: AdminUser) -> list[User]:
    """Every account, without password hashes."""
    return [User(**row) for row in users.list_users(conn)]


@router.post("", response_model=User, status_code=status.HTTP_201_CREATED,
             summary="Create a user (admins)")
def add_user(request: Request, conn: ConnDep, admin: AdminUser, body: NewUser) -> User:
    """A new account; 422 names the bad field, 409 a taken username."""
    row = users.add_user(conn, username=body.username, password=body.password,
                         roles=body.roles, scope_codes=body.scope_codes,
                         department_code=body.department_code, person_id=body.person_id,
                         display_name=body.display_name, by=actor_of(request, admin))
    conn.commit()
    return User(**row)


@router.post("/{username}/disable", response_model=User, summary="Disable a user (admins)")
def disable_user(request: Request, conn: ConnDep, admin: AdminUser,
                 username: UsernamePath) -> User:
    """Disable an account: its sessions stop working at once. Accounts are never deleted."""
    row = users.disable_user(conn, username, by=actor_of(request, admin))
    conn.commit()
    return User(**row)
