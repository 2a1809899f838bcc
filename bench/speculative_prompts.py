"""The prompts of the prompt-lookup benches, by task kind: three per kind, copy-heavy (code edits, extraction,
rewriting) and not (open questions, math). Plain data with no imports, so the GPU bench
(``speculative_gpu.py``), which runs where sovrouter's dependencies are not installed, reads the same prompts as
the llama.cpp bench (``speculative.py``)."""

from __future__ import annotations

_CODE_A = '''def load_users(path):
    users = []
    with open(path) as handle:
        for line in handle:
            name, email, age = line.strip().split(",")
            users.append({"name": name, "email": email, "age": int(age)})
    return users


def adults(users):
    return [user for user in users if user["age"] >= 18]
'''
_CODE_B = '''class Counter:
    def __init__(self):
        self.count = 0

    def increment(self):
        self.count = self.count + 1
        return self.count

    def reset(self):
        self.count = 0
'''
_CODE_C = '''function total(items) {
  let sum = 0;
  for (let i = 0; i < items.length; i++) {
    sum = sum + items[i].price * items[i].quantity;
  }
  return sum;
}
'''
_TEXT_A = ("Our team met on Tuesday to review the quarterly numbers. Sales in the northern region grew by twelve "
           "percent, while the southern region stayed flat. The marketing budget will be moved to online "
           "channels next quarter, and two new hires will join the support team in March.")
_TEXT_B = ("The library will be closed on Monday for maintenance. Books that are due on Monday can be returned on "
           "Tuesday without a late fee. The reading room will reopen on Wednesday with new opening hours, from "
           "nine in the morning to eight in the evening.")
_TEXT_C = ("Invoice 4471 was issued on 3 May 2024 to Northwind Traders, 12 Harbour Street, Bristol. It lists 40 "
           "units of part A-220 at 3.50 each and 15 units of part B-105 at 12.00 each. Payment is due within "
           "30 days to account number 5521.")

PROMPTS: dict[str, list[str]] = {
    "code-edit": [
        "Rename the function load_users to read_users everywhere in this code and return the full code:\n\n"
        f"```python\n{_CODE_A}```",
        f"Add a method decrement to this class and return the complete code:\n\n```python\n{_CODE_B}```",
        f"Refactor this function to use a const for the loop variable where possible and return the full code:"
        f"\n\n```javascript\n{_CODE_C}```",
    ],
    "extraction": [
        f"Extract every number in this text with the words around it, one per line:\n\n{_TEXT_C}",
        f"Extract the sentences that mention a day of the week from this text:\n\n{_TEXT_A}",
        f"Extract the opening hours and the days from this notice as a list:\n\n{_TEXT_B}",
    ],
    "rewrite": [
        f"Rewrite this text in a more formal tone:\n\n{_TEXT_A}",
        f"Proofread this text and return it corrected:\n\n{_TEXT_B.replace('will be', 'wil be')}",
        f"Rewrite this notice so that each sentence is on its own line:\n\n{_TEXT_C}",
    ],
    "open-question": [
        "Why do leaves change colour in autumn?",
        "What are the main benefits of regular exercise?",
        "Describe how a bicycle works.",
    ],
    "math": [
        "A train travels 120 km in 1.5 hours. What is its average speed? Explain step by step.",
        "If 3x + 7 = 25, what is x? Show your work.",
        "What is 15% of 240? Explain how you get the answer.",
    ],
}
COPY_HEAVY = ("code-edit", "extraction", "rewrite")
