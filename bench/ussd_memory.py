"""Redis bytes per live USSD session and per appointment, made by the gateway's own code.

Sessions are walked hop by hop through `gateway.conversation.handle_ussd` to the confirm
screen (the largest state of the booking branch), then confirmed. Every key a session or an
appointment owns is measured with `MEMORY USAGE ... SAMPLES 0`; for structures shared by many
appointments (the number's set of refs, the centre's day list, the due index, the audit
stream) the growth of the whole structure is measured and divided by the count.
"""
from __future__ import annotations

import random

from rq.job import Job

from flows.ids import parse_ref
from gateway import conversation, keys, outbox

NAMES = ("Asha Devi", "Ravi Kumar", "Meena Iyer", "Arjun Singh", "Farah Ali", "Kiran Bala")


def usage(r, names) -> int:
    """Bytes Redis holds for these keys (0 for a key that does not exist)."""
    pipe = r.pipeline(transaction=False)
    for name in names:
        pipe.memory_usage(name, samples=0)
    return sum(n or 0 for n in pipe.execute())


def _walk(services, sid: str, phone: str, answers: list[str]) -> str:
    text, screen = "", ""
    for i, answer in enumerate(answers):
        text = answer if i == 1 else (f"{text}*{answer}" if i else "")
        screen, _ = conversation.handle_ussd(services, sid, phone, text)
    return screen


def to_confirm(services, areas: list[str], n: int, rng: random.Random, language: str = "1",
               first: int = 0) -> dict[str, tuple[str, str]]:
    """n new numbers, each walked to the confirm screen: session id -> (phone, text so far)."""
    walked = {}
    for i in range(first, first + n):
        # session ids as Africa's Talking makes them ("ATUid_" and 32 hex digits)
        sid, phone = f"ATUid_{rng.getrandbits(128):032x}", f"+9196{i:08d}"
        answers = ["", language, "1", rng.choice(NAMES), str(rng.randrange(1950, 2006)), "1",
                   rng.choice(areas), "1", "1", "1"]
        screen = _walk(services, sid, phone, answers)
        assert "\n1 " in screen and "2 " in screen, screen  # the summary: 1 confirm, 2 cancel
        walked[sid] = (phone, "*".join(answers[1:]))
    return walked


def session_bytes(r, walked: dict[str, tuple[str, str]]) -> tuple[float, float]:
    """Bytes per session of the hop records and of the resume pointers."""
    n = len(walked)
    return (usage(r, [keys.ussd_session(phone, sid) for sid, (phone, _) in walked.items()]) / n,
            usage(r, [keys.ussd_resume(phone) for phone, _ in walked.values()]) / n)


def measure(services, areas: list[str], n: int, seed: int = 11) -> dict[str, float]:
    """Bytes per live session and per appointment (with the parts around them)."""
    r = services.redis
    rng = random.Random(seed)
    hindi = session_bytes(r, to_confirm(services, areas, max(n // 4, 1), rng, "2", first=n))
    walked = to_confirm(services, areas, n, rng)
    hop_records, resume_offers = session_bytes(r, walked)
    people = [(sid, phone) for sid, (phone, _) in walked.items()]
    texts = {sid: text for sid, (_, text) in walked.items()}

    def shared() -> list[str]:
        names = [keys.due_appointments(), keys.audit()]
        names += [keys.citizen_appointments(phone) for _, phone in people]
        names += list(r.scan_iter(keys.centre_day_appointments("*", "*"), count=1000))
        names += list(r.scan_iter(keys.session_roster("*"), count=1000))  # the seat's holder
        return names

    shared_before = usage(r, shared())
    citizens_before = usage(r, [keys.citizen(phone) for _, phone in people])
    for sid, phone in people:
        screen, end = conversation.handle_ussd(services, sid, phone, texts[sid] + "*1")
        assert end and "Booked" in screen, screen
    refs = [(phone, ref) for _, phone in people for ref in r.smembers(keys.citizen_appointments(phone))]
    assert len(refs) == n and all(parse_ref(ref) for _, ref in refs)
    own = usage(r, [keys.appointment(phone, ref) for phone, ref in refs]
                + [keys.ref_owner(ref) for _, ref in refs])
    shared_growth = usage(r, shared()) - shared_before
    persons = usage(r, [keys.citizen(phone) for _, phone in people]) - citizens_before
    message_ids = [mid for _, phone in people for mid in r.lrange(keys.outbox(phone), 0, -1)]
    messages = usage(r, [keys.message(mid) for mid in message_ids]
                     + [keys.outbox(phone) for _, phone in people])
    jobs = usage(services.queue_redis, [Job.key_for(outbox.job_id(mid, 1)) for mid in message_ids])
    return {
        "session": hop_records + resume_offers,
        "session_hop_record": hop_records,
        "session_resume_offer": resume_offers,
        "session_hindi": sum(hindi),
        "appointment": (own + shared_growth) / n,
        "appointment_own_keys": own / n,
        "appointment_shared": shared_growth / n,
        "person": persons / n,
        "booking_sms": messages / n,
        "booking_sms_job": jobs / n,
    }
