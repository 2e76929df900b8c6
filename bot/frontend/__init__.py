"""The Discord front end: the only part of ``bot`` that imports discord."""
