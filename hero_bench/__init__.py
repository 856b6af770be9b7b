"""hero-bench: feedback-efficiency benchmark of HERO, DDPO and D3PO with scripted oracles."""

__version__ = "0.1.0"
