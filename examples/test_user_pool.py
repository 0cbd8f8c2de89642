"""A pool of expensive test resources (users with accounts and sessions) recycled LIFO.

Creating a user (sign-up, e-mail confirmation, login) is slow, so a session-scoped ``UserPool``
creates a few and lends them out; the function-scoped ``user`` fixture checks one out, resets it
when the test is done and gives it back. The pool is a ``queue.LifoQueue``: the user returned
last is lent next, so a sequential run reuses one warm user, while a parallel run creates users
only up to the number of tests that actually overlap (never more than ``capacity``).

A test that finds the pool empty (more tests running than users allowed) waits for a user with
a timeout. The session fixture's teardown verifies the aggregate: every user came back clean,
no user was ever lent to two tests at once, and at most ``capacity`` users were created.
"""

from __future__ import annotations

import itertools
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from pytest_threadpool import parallelizable

pytestmark = parallelizable("children")

CAPACITY = 3
CHECKOUT_TIMEOUT_S = 30.0


@dataclass
class User:
    name: str
    cart: list[str] = field(default_factory=list)
    in_use: bool = False
    loans: int = 0


class UserPool:
    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._idle: queue.LifoQueue[User] = queue.LifoQueue()
        self._lock = threading.Lock()
        self._created: list[User] = []
        self._names = itertools.count(1)
        self._lent_now = 0
        self.max_lent = 0

    def _create(self) -> User | None:
        with self._lock:
            if len(self._created) >= self.capacity:
                return None
            user = User(f"user{next(self._names)}")
            self._created.append(user)
        time.sleep(0.05)  # sign-up and login are slow: that is why users are pooled
        return user

    def checkout(self, timeout: float = CHECKOUT_TIMEOUT_S) -> User:
        try:
            user = self._idle.get_nowait()
        except queue.Empty:
            user = self._create() or self._idle.get(timeout=timeout)
        with self._lock:
            if user.in_use:
                raise AssertionError(f"{user.name} was lent to two tests at once")
            user.in_use = True
            user.loans += 1
            self._lent_now += 1
            self.max_lent = max(self.max_lent, self._lent_now)
        return user

    def checkin(self, user: User) -> None:
        user.cart.clear()  # reset state so the next test starts clean
        with self._lock:
            user.in_use = False
            self._lent_now -= 1
        self._idle.put(user)

    @property
    def created(self) -> list[User]:
        with self._lock:
            return list(self._created)


@pytest.fixture(scope="session")
def user_pool() -> Iterator[UserPool]:
    pool = UserPool(CAPACITY)
    yield pool
    users = pool.created
    assert 1 <= len(users) <= CAPACITY
    assert all(not u.in_use and not u.cart for u in users), "a user was not returned clean"
    assert pool.max_lent <= CAPACITY


@pytest.fixture
def user(user_pool: UserPool) -> Iterator[User]:
    user = user_pool.checkout()
    yield user
    user_pool.checkin(user)


def add_to_cart(user: User, *items: str) -> None:
    for item in items:
        time.sleep(0.01)  # a request to the shop
        user.cart.append(item)


@pytest.mark.parametrize("item", ["book", "lamp", "mug", "pen", "sock", "tea"])
@parallelizable("all")  # the variants may overlap too
def test_cart_starts_empty(user, item):
    assert user.cart == []
    add_to_cart(user, item)
    assert user.cart == [item]


def test_two_items(user):
    add_to_cart(user, "a", "b")
    assert user.cart == ["a", "b"]


def test_users_are_reused_most_recent_first():
    """LIFO: a user given back is the next one lent out, so warm users keep being reused.

    Checked on a private pool: on the shared one, a test running at the same time could give a
    user back between our checkin and checkout.
    """
    pool = UserPool(capacity=2)
    first, second = pool.checkout(), pool.checkout()
    pool.checkin(first)
    pool.checkin(second)
    again = pool.checkout()
    assert again is second
    pool.checkin(again)
    assert len(pool.created) == 2


def test_a_test_can_borrow_two_users(user_pool):
    """A chat between two users: borrow two at once, give both back."""
    alice = user_pool.checkout()
    bob = user_pool.checkout()
    try:
        assert alice is not bob
        add_to_cart(alice, "gift")
        assert bob.cart == []
    finally:
        user_pool.checkin(bob)
        user_pool.checkin(alice)
