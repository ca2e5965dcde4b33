"""A deterministic generator of valid profiles for benchmarks (10,000 in well under 2 s).

Same `(n, seed)`, same profiles, on any machine (its own `random.Random`, no global state).
Profiles are built to satisfy every rule, then validated by `TherapistProfile` all the same.
"""

from __future__ import annotations

import random
import uuid
from typing import Any, get_args

from catalog.domain.profile import TherapistProfile
from contracts.vocabulary import FocusArea

_NS = uuid.UUID("0b8f3b8e-6a52-4e0c-8d3e-5b7a9f1c2d40")

FIRST = (
    "Elin Omar Shirin Johan Maja Hodan Anders Lina Yonas Agnieszka Karim Sofia Emir Karin Reza "
    "Ingrid Per Aisha Marta Nils Dilan Hanna Leila Mikael Amina Sara Erik Tigist Fatima Gustav "
    "Carmen Lars Anna Nadia Viktor Zainab Ida Mehmet Samir Tove Daniel Alma Jonas"
).split()
LAST = (
    "Bergqvist Haddad Rostami Lindqvist Ekström Warsame Nyberg Karlsson Tesfaye Nowak Mansour "
    "Moreno Hodžić Åberg Karimi Holm Sandberg Yusuf Kowalska Forsberg Aydın Virtanen Ahmadi "
    "Öberg Ali Lundmark Nilsson Haile Wallin Ruiz Mäkinen Stenlund Rahimi Blom Hussein Persson "
    "Demir Benali Hedlund Fischer Jusić Eriksson"
).split()
CITIES: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("Stockholm", ("Götgatan", "Hornsgatan", "Sankt Eriksgatan", "Fleminggatan"), "11"),
    ("Göteborg", ("Linnégatan", "Vasagatan", "Aschebergsgatan"), "41"),
    ("Malmö", ("Södra Förstadsgatan", "Davidshallsgatan", "Amiralsgatan"), "21"),
    ("Uppsala", ("Kungsgatan", "Sysslomansgatan", "Dragarbrunnsgatan"), "75"),
    ("Linköping", ("Drottninggatan", "Ågatan"), "58"),
    ("Örebro", ("Storgatan", "Fabriksgatan"), "70"),
    ("Västerås", ("Stora Gatan", "Vasagatan"), "72"),
    ("Umeå", ("Rådhusesplanaden", "Kungsgatan"), "90"),
    ("Lund", ("Bangatan", "Stora Södergatan"), "22"),
    ("Luleå", ("Storgatan", "Smedjegatan"), "97"),
)
OTHER_LANGUAGES = ("en", "ar", "fa", "so", "pl", "es", "ti", "de", "fi", "bs", "ku", "tr", "ru")
FOCUS: tuple[FocusArea, ...] = get_args(FocusArea)
METHOD_SETS: tuple[tuple[str, ...], ...] = (
    ("IPT",),
    ("IPT",),
    ("KBT",),
    ("IPT", "KBT"),
    ("IPT-A",),
    ("IPT", "IPT-A"),
    ("IPT", "IPT-A", "KBT"),
)
BIO = "Syntetisk profil för prestandatester. Arbetar med {methods}."


def synthetic_therapist_id(index: int, seed: int = 0) -> uuid.UUID:
    """A stable id for the `index`-th synthetic profile of `seed`."""
    return uuid.uuid5(_NS, f"{seed}:{index}")


def _profile_data(rng: random.Random) -> dict[str, Any]:
    profession = rng.choices(
        ("psychologist", "psychotherapist", "certified_staff"), weights=(5, 3, 2)
    )[0]
    methods = list(rng.choice(METHOD_SETS))
    ages = sorted({"adolescents" if m == "IPT-A" else "adults" for m in methods})
    licensed = profession != "certified_staff"
    city, streets, postcode = rng.choice(CITIES)
    modes = rng.choice((["video"], ["video", "in_person"], ["in_person"]))
    languages = ["sv", *rng.sample(OTHER_LANGUAGES, rng.randint(0, 3))]
    if rng.random() < 0.1:
        languages.reverse()
    address = None
    if "in_person" in modes:
        address = (
            f"{rng.choice(streets)} {rng.randint(1, 120)}, "
            f"{postcode}{rng.randint(1, 9)} {rng.randint(10, 99)} {city}"
        )
    return {
        "name": f"{rng.choice(FIRST)} {rng.choice(LAST)}",
        "profession": profession,
        "licence_number": f"{rng.randint(100000, 9999999)}" if licensed else None,
        "certifications": [] if licensed else list(methods),
        "methods": methods,
        "age_groups": ages,
        "focus_areas": rng.sample(FOCUS, rng.randint(1, 4)),
        "languages": languages,
        "modes": modes,
        "city": city,
        "practice_address": address,
        "bio": BIO.format(methods=", ".join(methods)),
        "capacity": rng.randint(3, 25),
        "accepting_new_clients": rng.random() < 0.85,
        "time_zone": "Europe/Stockholm",
    }


def synthetic_profiles(n: int, seed: int = 0) -> list[TherapistProfile]:
    """`n` valid, varied profiles; the same for the same `(n, seed)`."""
    if n < 0:
        raise ValueError("n must be 0 or more")
    rng = random.Random(seed)
    return [TherapistProfile.model_validate(_profile_data(rng)) for _ in range(n)]
