"""Training dynamic networks (survey section 5.2, chapter 5): gradient estimators, efficiency losses, exit objectives."""
