"""Which persona speaks: the channel's choice, else the first matching rule; in a thread, the
thread's own choice, then its channel's choice and the rules for its channel."""

from __future__ import annotations

from bot.personas import PersonaSet, parse_persona_rules, parse_personas


def personas() -> PersonaSet:
    return PersonaSet(
        parse_personas(
            "personas",
            {
                "pirate": {"system_prompt": "Arr."},
                "teacher": {"system_prompt": "Patiently."},
                "poet": {"system_prompt": "In verse."},
            },
        ),
        parse_persona_rules(
            "persona_rules",
            [
                {"channels": [100], "persona": "teacher"},
                {"channel_name": "poetry-*", "persona": "poet"},
            ],
        ),
    )


def name(chosen: object) -> str | None:
    return getattr(chosen, "name", None)


def test_a_thread_follows_its_channels_rules() -> None:
    set_ = personas()
    assert name(set_.pick(100, "help", "hi")) == "teacher"
    assert name(set_.pick(555, "a thread", "hi")) is None
    assert name(set_.pick(555, "a thread", "hi", parent=100, parent_name="help")) == "teacher"
    assert name(set_.pick(556, "my poem", "hi", parent=200, parent_name="poetry-club")) == "poet"
    assert name(set_.pick(557, "poetry-thread", "hi", parent=200, parent_name="general")) == "poet"


def test_a_thread_follows_its_channels_choice_unless_it_chose_its_own() -> None:
    set_ = personas()
    set_.set_channel_persona(200, "pirate")
    assert name(set_.channel_persona(555)) is None
    assert name(set_.channel_persona(555, parent=200)) == "pirate"
    assert name(set_.pick(555, "t", "hi", parent=200, parent_name="general")) == "pirate"
    # The channel's choice beats the rules for the channel, in its threads as well.
    set_.set_channel_persona(100, "poet")
    assert name(set_.pick(555, "t", "hi", parent=100, parent_name="help")) == "poet"
    set_.set_channel_persona(555, "teacher")
    assert name(set_.pick(555, "t", "hi", parent=200, parent_name="general")) == "teacher"
    set_.set_channel_persona(555, None)
    assert name(set_.pick(555, "t", "hi", parent=200, parent_name="general")) == "pirate"
