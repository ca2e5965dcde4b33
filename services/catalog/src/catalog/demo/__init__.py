"""Demo catalog data: a curated JSON file of fictional therapists and a synthetic generator."""

from catalog.demo.data import DemoTherapist, demo_therapists, load_demo_profiles
from catalog.demo.synthetic import synthetic_profiles, synthetic_therapist_id

__all__ = [
    "DemoTherapist",
    "demo_therapists",
    "load_demo_profiles",
    "synthetic_profiles",
    "synthetic_therapist_id",
]
