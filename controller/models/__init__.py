"""Domain models (pydantic). Models import no adapter."""
