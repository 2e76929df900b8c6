"""What ``botctl analyze`` computes: pstats files read, ranked and diffed (:mod:`.stats`), and
served with snakeviz (:mod:`.web`). Nothing here prints; ``botctl.reporters.analyze`` renders."""
