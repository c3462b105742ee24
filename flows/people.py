"""Who may be booked: a new person's name and year of birth, and who may not book now."""
from __future__ import annotations

import unicodedata
from datetime import date

from .domain import Beneficiary, Citizen

NAME_LENGTH = (2, 40)
OLDEST_AGE = 120
HAS_APPOINTMENT = "has_appointment"
FULLY_VACCINATED = "fully_vaccinated"


def parse_name(text: str) -> str | None:
    """A full name: 2-40 characters, letters of any script, spaces and . ' - only."""
    name = " ".join(text.split())
    if not NAME_LENGTH[0] <= len(name) <= NAME_LENGTH[1] or not name[0].isalpha():
        return None
    # Vowel signs of Indic scripts are marks (M*), not letters, but belong to the name.
    ok = all(unicodedata.category(ch)[0] in "LM" or ch in " .'-" for ch in name)
    return name if ok else None


def parse_birth_year(text: str, today: date) -> int | None:
    """Four digits, not in the future and not more than 120 years ago."""
    if len(text) != 4 or not (text.isascii() and text.isdigit()):
        return None
    year = int(text)
    return year if today.year - OLDEST_AGE <= year <= today.year else None


def refusal(citizen: Citizen, person: Beneficiary) -> str:
    """Why this person cannot book now ("" when they can): one live appointment per dose."""
    if person.doses_done >= 2:
        return FULLY_VACCINATED
    if any(a.beneficiary_id == person.beneficiary_id and a.dose == person.next_dose
           for a in citizen.live_appointments()):
        return HAS_APPOINTMENT
    return ""
