"""Every Redis key Teeka uses is built here, and only here.

Keys of one number (citizen, vaccinator, their USSD sessions, SMS ids, outbox) share the hash
tag `{<phone>}` and keys of one vaccination session the tag `{<session_id>}`, so a step's
transaction stays in one slot on a Redis Cluster. Writes a step makes to keys of other slots
travel through the follow-up list of its slot (`followups`, see `gateway.slots`).
"""
from __future__ import annotations

from hashlib import blake2b

P = "t:"


# ---- citizens (tag: phone) ----
def citizen(phone: str) -> str:
    return f"{P}c:{{{phone}}}"


def citizen_appointments(phone: str) -> str:
    """Set of every ref ever booked on this number."""
    return f"{P}ca:{{{phone}}}"


def appointment(phone: str, ref: str) -> str:
    return f"{P}a:{{{phone}}}:{ref}"


def sms_state(phone: str) -> str:
    return f"{P}ss:{{{phone}}}"


def ussd_resume(phone: str) -> str:
    return f"{P}ur:{{{phone}}}"


def flood(phone: str, hour: int) -> str:
    return f"{P}fl:{{{phone}}}:{hour}"


def conversation_lock(phone: str) -> str:
    return f"{P}lk:{{{phone}}}"


def booking_intents(phone: str) -> str:
    """Hash ref -> `<session_id>|<slot>|<unix time>`: a seat held for a booking of this number
    not yet committed (`gateway.slots.recover` gives back seats of intents left behind)."""
    return f"{P}bk:{{{phone}}}"


def applied(phone: str, provider_id: str) -> str:
    """An inbound SMS of another number already applied to this number's appointment."""
    return f"{P}op:{{{phone}}}:{provider_id}"


# ---- references and certificates: global lookups ----
def ref_owner(ref: str) -> str:
    """ref -> the phone number whose appointment it is."""
    return f"{P}r:{ref}"


def certificate(cert_id: str) -> str:
    return f"{P}cert:{cert_id}"


# ---- USSD sessions ----
def ussd_session(phone: str, session_id: str) -> str:
    """A USSD session's record, named by a digest of the provider's (long) session id: one
    key per live session, so its name is a good part of a session's memory."""
    return f"{P}us:{{{phone}}}:{blake2b(session_id.encode(), digest_size=8).hexdigest()}"


# ---- catalogue: centres, sessions, seats ----
def centres() -> str:
    return f"{P}centres"


def centre(centre_id: str) -> str:
    return f"{P}ce:{centre_id}"


def area(area_code: str) -> str:
    return f"{P}ar:{area_code}"


def centre_sessions(centre_id: str) -> str:
    """Sorted set of a centre's session ids, scored by the session day's ordinal."""
    return f"{P}cs:{centre_id}"


def session(session_id: str) -> str:
    """Hash: vaccine, min_age, doses, and per slot `c:<slot>` capacity and `t:<slot>` taken."""
    return f"{P}se:{{{session_id}}}"


def session_roster(session_id: str) -> str:
    """Hash ref -> `<phone>|<slot>|<unix time>` of every seat taken in the session."""
    return f"{P}sr:{{{session_id}}}"


def centre_day_appointments(centre_id: str, day: str) -> str:
    return f"{P}cda:{centre_id}:{day}"


def due_appointments() -> str:
    """Sorted set ref -> day ordinal, for the end-of-day sweep."""
    return f"{P}due"


def catalog_version() -> str:
    """A token the importer replaces with every write to centres or sessions, so a process
    knows when what it keeps of the catalogue is out of date."""
    return f"{P}cv"


# ---- vaccinators ----
def vaccinator(phone: str) -> str:
    return f"{P}v:{{{phone}}}"


def vaccinators() -> str:
    return f"{P}vs"


def vaccinator_failures(phone: str, hour: int) -> str:
    return f"{P}vf:{{{phone}}}:{hour}"


# ---- messages ----
def message(message_id: str) -> str:
    return f"{P}m:{message_id}"


def message_seq() -> str:
    return f"{P}m:seq"


def provider_message(provider_id: str) -> str:
    """Provider messageId -> our message id, for delivery reports."""
    return f"{P}mp:{provider_id}"


def messages_index() -> str:
    """Sorted set of message ids by creation time."""
    return f"{P}mi"


def messages_failed() -> str:
    return f"{P}mf"


def outbox(phone: str) -> str:
    """List of message ids per recipient, for the simulator's inbox and the outbox backend."""
    return f"{P}ob:{{{phone}}}"


def send_rate() -> str:
    return f"{P}rate:sms"


# ---- webhooks ----
def seen(kind: str, provider_id: str, phone: str = "") -> str:
    """A provider id already handled (inbound SMS, session end), kept for 48 h; in the
    sender's slot when there is a sender."""
    return f"{P}seen:{kind}:{{{phone}}}:{provider_id}" if phone else f"{P}seen:{kind}:{provider_id}"


# ---- operator ----
def audit() -> str:
    return f"{P}audit"


def alerts() -> str:
    return f"{P}alerts"


def disputes() -> str:
    return f"{P}disputes"


def settings() -> str:
    """Hash of settings that change without a restart (load shedding)."""
    return f"{P}settings"


def metrics(name: str) -> str:
    return f"{P}mx:{name}"


# ---- slots ----
def followups(home: str) -> str:
    """List of writes to other slots made by transactions on `home`'s slot, until applied."""
    return f"{P}fu:{{{hash_tag(home)}}}"


def hash_tag(key: str) -> str:
    """What a Redis Cluster hashes a key by: the text of its first `{...}`, else the key."""
    start = key.find("{")
    if start >= 0:
        end = key.find("}", start + 1)
        if end > start + 1:
            return key[start + 1:end]
    return key
