"""Open problems (survey section 7, chapter 7): exit decisions with guarantees, and the other open questions."""
