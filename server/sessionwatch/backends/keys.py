"""Every Redis key and channel name, for one prefix and one topology: the only place
they are spelled.

Python builds each name a script touches that is known before the call and passes it in
``KEYS`` (:meth:`KeyNames.session_keys`, :meth:`KeyNames.user_keys`); the Lua scripts
never spell a name. The few names a script learns only while it runs (the other sessions
found in a user's index, the user of a record it expires) are derived by one Lua helper,
``lua/_names.lua``, from :meth:`KeyNames.script_names` (``ARGV[1]``): the same heads as
below, and on a cluster the same tag rule.

=============  ==============================  ==========================================
name           one Redis, Sentinel (plain)     Redis Cluster (tagged)
=============  ==============================  ==========================================
record         ``{prefix}s:{id}``              ``{prefix}s:{T}.rest``, ``{prefix}s:{id}``
tombstone      ``{prefix}t:{id}``              ``{prefix}t:…`` (same shape)
live sockets   ``{prefix}l:{id}``              ``{prefix}l:…`` (same shape)
user index     ``{prefix}u:{user}``            ``{prefix}u:{T}user``, T = ``user_tag(user)``
session chan.  ``{prefix}c:s:{id}``            ``{prefix}c:s:…``, a shard channel
user channel   ``{prefix}c:u:{user}``          ``{prefix}c:u:{T}user``, a shard channel
family         ``{prefix}f:{family}``          ``{prefix}f:{T}.rest`` (remember-me)
families       ``{prefix}uf:{user}``           ``{prefix}uf:{T}user``, a user's families
rate (addr.)   ``{prefix}r:{name}:{address}``  ``{prefix}r:{name}:{A}``, A = the address
rate (user)    ``{prefix}r:{name}:{user}``     ``{prefix}r:{name}:{T}user`` (user's slot)
epoch          ``{prefix}epoch``               ``{prefix}epoch:{T}``, one per primary
durable fence  ``{prefix}fence``               ``{prefix}fence:{T}``, T of the key it fences
pending login  ``{prefix}p:{id}``              ``{prefix}p:{T}.rest`` (the user's slot)
provider link  ``{prefix}o:{digest}``          ``{prefix}o:{digest}``, a slot of its own
seen token     ``{prefix}j:{digest}``          ``{prefix}j:{digest}``, a slot of its own
known devices  ``{prefix}k:{user}``            ``{prefix}k:{T}user`` (the user's slot)
audit trail    ``{prefix}audit``               ``{prefix}audit:{S}``, one per slot (below)
=============  ==============================  ==========================================

A provider link (docs/sso.md) lists the sessions of one provider session or user: a
back-channel logout knows only the provider's ids, never the app's user, so the link
cannot live in the user's slot; each session it names is then ended in its own slot.
A seen token remembers a logout token's ``jti`` against replay.

(``{T}`` is the literal hash tag in braces; a tagged public id is ``T.rest``, an untagged
one, anonymous, is its own tag: ``{id}``. ``{S}`` is the smallest decimal number whose
hash slot is the script's slot, :func:`slot_tags`: a record stays in the slot of the
change it records, and there are at most 16384 shards, docs/audit.md.) The hub and the memory backend name channels
by the plain (*logical*) names; a cluster backend maps them to its shard channels with
:meth:`KeyNames.physical`.
"""

from __future__ import annotations

import binascii
import functools
import json
import re
from collections.abc import Sequence
from typing import Final, Literal

from ..core.exceptions import ConfigurationError
from ..core.limits import RateCheck
from ..core.tokens import slot_tag, user_tag

__all__ = [
    "CLUSTER_SLOTS",
    "KEEPALIVE_CHANNEL",
    "ClusterKeyNames",
    "KeyNames",
    "Topology",
    "key_names",
    "session_channel",
    "slot_tags",
    "user_channel",
]

CLUSTER_SLOTS: Final = 16384

Topology = Literal["plain", "cluster"]

# The heads of the names, after the prefix (the one spelling; lua/_names.lua gets them).
_HEADS: Final = {
    "s": "s:",  # session record (hash)
    "t": "t:",  # tombstone: why a session ended
    "l": "l:",  # live sockets of a session (sorted set)
    "u": "u:",  # a user's sessions (sorted set)
    "cs": "c:s:",  # channel of one session's tabs
    "cu": "c:u:",  # channel of all of one user's sessions
    "f": "f:",  # a remember-me token family (hash; core/remember.py)
    "uf": "uf:",  # a user's remember-me families (set)
    "epoch": "epoch",  # the identity of the stored state (Backend.epoch)
    "fence": "fence",  # a write that WAIT can count after an end (durable_ends.py)
    "p": "p:",  # a pending sign-in of on_limit="ask" (hash), in its user's slot
    "k": "k:",  # devices and places a user has used lately (hash: new_device/new_place)
    "audit": "audit",  # the audit trail (stream; one shard per slot on a Cluster)
}

# The heads no session script derives (so they stay out of script_names): the
# deployment-wide rates (KeyNames.rate), provider links and seen logout tokens.
_RATE_HEAD: Final = "r:"
_LINK_HEAD: Final = "o:"
_SEEN_HEAD: Final = "j:"

# A placeholder channel that keeps a process's pub/sub connection subscribed with no tab.
KEEPALIVE_CHANNEL: Final = "sessionwatch:keepalive"

_PUBLIC_ID = re.compile(r"[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)?")


class KeyNames:
    """The plain names (one Redis, Sentinel, and the logical channels of every backend)."""

    topology: Topology = "plain"
    publish_command = "PUBLISH"

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self._heads = {kind: prefix + head for kind, head in _HEADS.items()}
        self._script_names = json.dumps(
            {
                **self._heads,
                "tagged": self.topology == "cluster",
                "publish": self.publish_command,
            },
            separators=(",", ":"),
        )

    # What follows a head: overridden by the cluster's tag rule.
    def _of_session(self, public_id: str) -> str:
        return public_id

    def _of_user(self, user: str) -> str:
        return user

    def session(self, public_id: str) -> str:
        return self._heads["s"] + self._of_session(public_id)

    def tombstone(self, public_id: str) -> str:
        return self._heads["t"] + self._of_session(public_id)

    def presence(self, public_id: str) -> str:
        return self._heads["l"] + self._of_session(public_id)

    def pending(self, pending_id: str) -> str:
        """A pending sign-in, by the public id of its token (tagged with its user's
        tag: on a cluster in the user's slot, where its completion runs)."""
        return self._heads["p"] + self._of_session(pending_id)

    def index(self, user: str) -> str:
        return self._heads["u"] + self._of_user(user)

    def index_pattern(self) -> str:
        """The ``SCAN MATCH`` pattern of every user index (glob characters of the prefix
        escaped): the only way to enumerate users without a registry of them."""
        return re.sub(r"([*?\[\]\\])", r"\\\1", self._heads["u"]) + "*"

    def user_of_index(self, key: str) -> str | None:
        """The user whose index ``key`` is (``None`` for any other key)."""
        head = self._heads["u"]
        return key[len(head) :] or None if key.startswith(head) else None

    def session_channel(self, public_id: str) -> str:
        return self._heads["cs"] + self._of_session(public_id)

    def user_channel(self, user: str) -> str:
        return self._heads["cu"] + self._of_user(user)

    def family(self, family: str) -> str:
        """A remember-me family (its id is tagged as a signed-in session's is)."""
        return self._heads["f"] + self._of_session(family)

    def families(self, user: str) -> str:
        """The set of a user's remember-me families."""
        return self._heads["uf"] + self._of_user(user)

    def epoch(self, tag: str | None = None) -> str:
        """The key holding the identity of the stored state (:meth:`Backend.epoch`);
        on a cluster one per primary, ``tag`` choosing a slot that primary serves."""
        head = self._heads["epoch"]
        return head if tag is None else head + ":{" + tag + "}"

    def audit(self, slot: int | None = None) -> str:
        """The audit trail's stream; on a cluster the shard of hash slot ``slot``."""
        head = self._heads["audit"]
        return head if slot is None else head + ":{" + slot_tags()[slot] + "}"

    def known(self, user: str) -> str:
        """The devices and places ``user`` has used lately (``_prelude.lua`` novelty)."""
        return self._heads["k"] + self._of_user(user)

    def fence(self, key: str) -> str:
        """The key written before ``WAIT`` after an end on ``key`` (durable_ends.py): on
        the node that owns ``key``."""
        return self._heads["fence"]

    def session_keys(self, public_id: str) -> list[str]:
        """A session's names in the order ``declare_session`` of ``lua/_names.lua`` reads
        them from ``KEYS``: record, tombstone, live sockets, channel."""
        return [
            self.session(public_id),
            self.tombstone(public_id),
            self.presence(public_id),
            self.session_channel(public_id),
        ]

    def user_keys(self, user: str) -> list[str]:
        """A user's names in the order ``declare_user`` reads them: index, channel."""
        return [self.index(user), self.user_channel(user)]

    def remember_keys(self, family: str, user: str) -> list[str]:
        """A family's names in the order the remember scripts read them: the family,
        the user's families."""
        return [self.family(family), self.families(user)]

    def _of_address(self, address: str) -> str:
        return address

    def provider_link(self, digest: str) -> str:
        """The sorted set of the sessions linked to one provider session or user."""
        return self.prefix + _LINK_HEAD + self._of_address(digest)

    def seen_token(self, digest: str) -> str:
        """The marker of a logout token already used (its ``jti``)."""
        return self.prefix + _SEEN_HEAD + self._of_address(digest)

    def rate(self, name: str, subject: str, *, per: Literal["address", "user"]) -> str:
        """The key of ``subject``'s deployment-wide rate ``name``
        (:class:`~sessionwatch.core.limits.RateRule`): a client address or a user id."""
        tail = self._of_user(subject) if per == "user" else self._of_address(subject)
        return self.prefix + _RATE_HEAD + name + ":" + tail

    def rates(self, checks: Sequence[RateCheck]) -> list[str]:
        """The keys of ``checks`` (``(rule, subject)`` pairs), in their order."""
        return [self.rate(rule.name, subject, per=rule.per) for rule, subject in checks]

    def script_names(self) -> str:
        """``ARGV[1]`` of every script: the heads, whether names are tagged, and the
        publish command, as JSON (for the names a script learns only while running)."""
        return self._script_names

    def physical(self, channel: str) -> str:
        """The channel of this topology behind a logical channel name."""
        return channel


class ClusterKeyNames(KeyNames):
    """The hash-tagged names of a Redis Cluster: a user's sessions, index and channels
    share one slot (the tag of a public id is its user's, see
    :func:`~sessionwatch.core.tokens.user_tag`); channels are shard channels."""

    topology: Topology = "cluster"
    publish_command = "SPUBLISH"

    def __init__(self, prefix: str) -> None:
        if "{" in prefix or "}" in prefix:
            raise ConfigurationError(
                f"key prefix {prefix!r} contains a brace: on a Redis Cluster the braces "
                "are the hash tag sessionwatch sets itself"
            )
        super().__init__(prefix)
        self._plain = KeyNames(prefix)

    @staticmethod
    def slotted(public_id: str) -> str:
        """``T.rest`` → ``{T}.rest``; an untagged id ``x`` → ``{x}``."""
        tag = slot_tag(public_id)
        return "{" + tag + "}" + public_id[len(tag) :]

    @staticmethod
    def valid(public_id: str) -> bool:
        """Whether ``public_id`` has the shape of a public id (one tag at most)."""
        return _PUBLIC_ID.fullmatch(public_id) is not None

    def _of_session(self, public_id: str) -> str:
        return self.slotted(public_id)

    def _of_address(self, address: str) -> str:
        return "{" + address + "}"  # each address (and digest) a slot of its own

    def _of_user(self, user: str) -> str:
        return "{" + user_tag(user) + "}" + user

    def user_of_index(self, key: str) -> str | None:
        tagged = super().user_of_index(key)  # "{T}user"
        if tagged is None or not tagged.startswith("{") or "}" not in tagged:
            return None
        tag, _, user = tagged[1:].partition("}")
        return user if user and tag == user_tag(user) else None

    def fence(self, key: str) -> str:
        start = key.index("{")
        return self._heads["fence"] + ":" + key[start : key.index("}", start) + 1]

    def physical(self, channel: str) -> str:
        session = self._plain.session_channel("")
        user = self._plain.user_channel("")
        if channel.startswith(session):
            return self.session_channel(channel[len(session) :])
        if channel.startswith(user):
            return self.user_channel(channel[len(user) :])
        return "{" + channel + "}"  # any other channel: a slot of its own


@functools.cache
def slot_tags() -> tuple[str, ...]:
    """For each of the 16384 hash slots, the smallest decimal number whose slot it is
    (about 160,000 CRC16s, once per process: ~0.15 s)."""
    tags: list[str | None] = [None] * CLUSTER_SLOTS
    missing = CLUSTER_SLOTS
    number = 0
    while missing:
        text = str(number)
        slot = binascii.crc_hqx(text.encode(), 0) % CLUSTER_SLOTS
        if tags[slot] is None:
            tags[slot] = text
            missing -= 1
        number += 1
    return tuple(tag for tag in tags if tag is not None)


def key_names(prefix: str, topology: Topology = "plain") -> KeyNames:
    """The names for ``prefix`` on ``topology``."""
    return ClusterKeyNames(prefix) if topology == "cluster" else KeyNames(prefix)


def session_channel(prefix: str, public_id: str) -> str:
    """The logical channel of one session's tabs (what the hub subscribes)."""
    return prefix + _HEADS["cs"] + public_id


def user_channel(prefix: str, user_id: str) -> str:
    """The logical channel of all of one user's sessions."""
    return prefix + _HEADS["cu"] + user_id
