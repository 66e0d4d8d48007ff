"""Schema revisions of the feedback store, oldest first; each is written once and never edited."""
