"""What ``botctl metrics`` computes from the bot's JSON Lines metrics files: reading and selecting
events (:mod:`.events`), following a file live (:mod:`.follow`), the summary (:mod:`.summary`) and
the batch tuning (:mod:`.tune`). Nothing here prints; ``botctl.reporters.metrics`` renders."""
