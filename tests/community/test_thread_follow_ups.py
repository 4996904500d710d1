"""A customer's follow-up in a conversation we are already having with them reaches a person: the
device details an agent asked for, "still not working" after the bot's answer. Other people's posts
in the same thread are routed on their own."""

from __future__ import annotations

from models import RouteDecision


async def decision(world, mention) -> RouteDecision:  # noqa: ANN001
    [d] = await world.get(RouteDecision, mention_id=mention.id)
    return d


async def test_a_follow_up_in_a_conversation_an_agent_has_goes_to_the_agent(world):
    first = await world.mention("@AcmeHelp the app crashes when I open my library", author="ana", issue="bug_report")
    await world.run(first)
    assert (await decision(world, first)).outcome == "agent_queue"
    details = await world.mention("@AcmeHelp iPhone 6s, latest iOS, every time", author="ana", issue="other",
                                  in_reply_to=first.external_id)
    stranger = await world.mention("@AcmeHelp same here on my iPhone 6s", author="bo", issue="other",
                                   in_reply_to=first.external_id)
    await world.run(details, stranger)
    d = await decision(world, details)
    assert (d.outcome, d.details["follow_up"]) == ("agent_queue", True)
    assert d.reason == "the customer follows up in a conversation an agent has"
    assert (await decision(world, stranger)).outcome == "ignore"  # someone else's post, routed on its own


async def test_thanks_in_a_conversation_an_agent_has_is_left_alone(world):
    first = await world.mention("@AcmeHelp the app crashes when I open my library", author="cy", issue="bug_report")
    await world.run(first)
    thanks = await world.mention("@AcmeHelp sorted now, thank you!", author="cy", issue="praise",
                                 in_reply_to=first.external_id)
    await world.run(thanks)
    assert (await decision(world, thanks)).outcome == "ignore"


async def test_coming_back_after_the_bots_answer_reaches_a_person(world, connectors):
    first = await world.mention("@AcmeHelp how do I reset my password?", author="di")
    await world.run(first)
    assert (await decision(world, first)).outcome == "auto_answer" and connectors["x"].kinds() == ["public_reply"]
    back = await world.mention("@AcmeHelp did that, nothing happens", author="di", issue="other",
                               in_reply_to=first.external_id)
    other = await world.mention("@AcmeHelp lol same", author="ed", issue="other", in_reply_to=first.external_id)
    await world.run(back, other)
    d = await decision(world, back)
    assert (d.outcome, d.reason) == ("agent_queue", "the customer came back after our answer")
    assert (await decision(world, other)).outcome == "ignore"
