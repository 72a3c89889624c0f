"""Sample-wise dynamic networks (survey section 2, chapter 2): one module per family of methods."""
