"""Decision making (survey section 5.1, chapter 5): confidence-based exit rules and budgets, and policy networks."""
