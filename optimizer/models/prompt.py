"""Turn a DSPy request into llama.cpp input: chat messages, or one plain completion prompt for base models."""

from __future__ import annotations

from dspy.lm15 import Request


def _text(content) -> str:
    if isinstance(content, str):
        return content
    return "".join(getattr(part, "text", "") or "" for part in content)


def chat_messages(request: Request) -> list[dict[str, str]]:
    """OpenAI-style messages for a model with a chat template."""
    messages = []
    if request.system is not None:
        messages.append({"role": "system", "content": _text(request.system)})
    messages.extend({"role": m.role, "content": m.text or ""} for m in request.messages)
    return messages


def completion_prompt(request: Request) -> str:
    """A plain-text prompt for a base model: the turns in order, each on its own paragraph, ending where
    the model's answer starts. A trailing assistant message is a prefix the model continues."""
    turns = chat_messages(request)
    if turns and turns[-1]["role"] == "assistant":
        *head, last = turns
        return "\n\n".join(t["content"] for t in head) + "\n\n" + last["content"]
    return "\n\n".join(t["content"] for t in turns) + "\n\n"
