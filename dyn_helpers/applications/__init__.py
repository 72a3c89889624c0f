"""Applications (survey section 6, chapter 6): dynamic networks on other data than images, one module per application."""
