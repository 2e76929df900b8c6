"""What ``botctl profile`` does: start the bot or attach to it, profile it, stop it in order.

:mod:`.modes` runs each mode from a :class:`~.request.ProfileRequest`; :mod:`.launcher` starts and
stops the bot; :mod:`.attach` handles ``--pid``; :mod:`.pyspy` and :mod:`.memray_backend` drive the
external profilers; :mod:`.inprocess` is the hook inside the bot (with :mod:`.on_demand` and
:mod:`.tracemalloc_session`). ``botctl.reporters.profile`` renders the result.
"""
