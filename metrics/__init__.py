"""The core: contact-record definitions and metric computation, with no I/O."""
