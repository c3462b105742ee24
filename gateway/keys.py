"""Every Redis key Teeka uses is built here, and only here.

Keys of one citizen share the hash tag `{<phone>}` and keys of one vaccination session the
tag `{<session_id>}`, so multi-key operations stay in one slot on a Redis Cluster.
"""
from __future__ import annotations

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


# ---- references and certificates: global lookups ----
def ref_owner(ref: str) -> str:
    """ref -> the phone number whose appointment it is."""
    return f"{P}r:{ref}"


def certificate(cert_id: str) -> str:
    return f"{P}cert:{cert_id}"


# ---- USSD sessions ----
def ussd_session(session_id: str) -> str:
    return f"{P}us:{session_id}"


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
def seen(kind: str, provider_id: str) -> str:
    """A provider id already handled (inbound SMS, delivery report), kept for 48 h."""
    return f"{P}seen:{kind}:{provider_id}"


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
