"""A small LoCoMo-format sample, written by hand for the tests (no LoCoMo data is copied here)."""

from __future__ import annotations

from typing import Any


def sample(sample_id: str = "conv-x") -> dict[str, Any]:
    return {
        "sample_id": sample_id,
        "conversation": {
            "speaker_a": "Ana",
            "speaker_b": "Ben",
            "session_1_date_time": "1:56 pm on 8 May, 2023",
            "session_1": [
                {"speaker": "Ana", "dia_id": "D1:1", "text": "I adopted a grey cat named Pixel yesterday."},
                {"speaker": "Ben", "dia_id": "D1:2", "text": "Lovely! I went hiking in the Alps."},
                {
                    "speaker": "Ana",
                    "dia_id": "D1:3",
                    "text": "Look at this.",
                    "img_url": ["http://example.invalid/a.jpg"],
                    "blip_caption": "a photo of a grey cat on a sofa",
                },
            ],
            "session_2_date_time": "10:37 am on 27 June, 2023",
            "session_2": [
                {"speaker": "Ben", "dia_id": "D2:1", "text": "My sister started violin lessons."},
                {"speaker": "Ana", "dia_id": "D2:2", "text": "Pixel broke my favourite mug today."},
            ],
            # A date without a session, as some public samples have.
            "session_3_date_time": "8:00 pm on 1 July, 2023",
        },
        "qa": [
            {
                "question": "What is the name of Ana's cat?",
                "answer": "Pixel",
                "evidence": ["D1:1"],
                "category": 4,
            },
            {
                "question": "When did Ana adopt her cat?",
                "answer": "7 May 2023",
                "evidence": ["D1:1"],
                "category": 2,
            },
            {
                "question": "What did Pixel do?",
                "answer": "broke a mug, sat on a sofa",
                "evidence": ["D1:3; D2:2"],
                "category": 1,
            },
            {"question": "Which year?", "answer": 2023, "evidence": ["D9:9"], "category": 3},
            {
                "question": "What instrument does Ana play?",
                "adversarial_answer": "violin",
                "evidence": ["D2:1"],
                "category": 5,
            },
        ],
        "event_summary": {},
    }
