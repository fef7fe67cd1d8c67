"""Who may do what in the app: roles from sign-in (:mod:`.roles`), paid-generation limits
(:mod:`.spending`)."""
