"""Shared encoders (each model is loaded once per session) and a few dozen realistic prompts."""

import shutil

import pytest

from causal_router.features.encoder import TransformerEncoder
from causal_router.features.models import default_model_path
from causal_router.features.static import StaticEncoder

PROMPTS = [
    "What is the capital of Australia, and why is it not Sydney?",
    "Write a Python function that returns the n-th Fibonacci number using memoization.",
    "Explain the difference between a process and a thread to a first-year student.",
    "Translate into French: 'The meeting has been moved to Thursday afternoon.'",
    "Solve for x: 3x^2 - 12x + 9 = 0. Show each step.",
    "Summarise the causes of the First World War in three bullet points.",
    "Which of these is a prime number? (A) 51 (B) 57 (C) 59 (D) 63",
    "Compose a haiku about the first snow falling on a quiet mountain village.",
    "A train leaves Chicago at 3 pm travelling 60 mph; another leaves at 4 pm at 80 mph. "
    "When does the second catch up?",
    "What does the HTTP status code 418 mean?",
    "Rewrite this sentence in the passive voice: The committee approved the new budget.",
    "List five common symptoms of iron-deficiency anaemia.",
    "def add(a, b):\n    return a - b\n# Find the bug in this function and fix it.",
    "Is it ethical for companies to use customer data to train AI models without explicit consent?",
    "Give me a SQL query that returns the ten customers with the highest total order value.",
    "In chess, what is the en passant rule?",
    "Convert 72 degrees Fahrenheit to Celsius.",
    "Which planet in our solar system has the longest day?",
    "Write a short cover letter for a junior data analyst position at a retail company.",
    "What is the derivative of sin(x) * e^x?",
    "Name the author of 'One Hundred Years of Solitude' and describe its narrative style.",
    "hi",
    "",
    "?",
    "Premise: All birds can fly. Penguins are birds. Hypothesis: Penguins can fly. "
    "Entailment, neutral or contradiction?",
    "Explain gradient descent with momentum as if to a high-school student, with an analogy.",
    "What are the trade-offs between microservices and a monolithic architecture?",
    "Recommend three science fiction novels for someone who loved 'The Left Hand of Darkness'.",
    "Calculate the compound interest on $5,000 at 4% per year, compounded monthly, over 10 years.",
    "¿Cuál es la diferencia entre 'ser' y 'estar'? Da ejemplos.",
]
# long prompts, past the 256-token cap (like most RouterBench prompts)
LONG_PROMPTS = [" ".join(PROMPTS[i : i + 9]) + " Answer the last question only." for i in range(0, 18, 3)]
ALL_PROMPTS = PROMPTS + LONG_PROMPTS  # 36



@pytest.fixture(scope="session")
def prompts():
    """36 prompts: 30 short and varied (empty, one character, code, Spanish, ...) and 6 past the
    256-token cap."""
    return list(ALL_PROMPTS)


@pytest.fixture(scope="session")
def fp32_encoder():
    enc = TransformerEncoder(device="cpu", precision="fp32")
    enc._load()
    return enc


@pytest.fixture(scope="session")
def bf16_encoder():
    import torch

    check = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)
    if not (torch.backends.mkldnn.is_available() and check()):
        pytest.skip("torch's oneDNN has no bf16 support on this CPU")
    enc = TransformerEncoder(device="cpu", precision="bf16")
    enc._load()
    return enc


def _clone(encoder, **settings):
    enc = TransformerEncoder(**{**encoder.config(), **settings})
    enc._tokenizer, enc._model, enc._dim, enc._fast_bf16 = (
        encoder._tokenizer, encoder._model, encoder._dim, encoder._fast_bf16)
    return enc


@pytest.fixture(scope="session")
def clone():
    """``clone(encoder, **settings)``: a new encoder with other settings (batching, threads,
    ...) sharing ``encoder``'s loaded model; its precision must stay the same."""
    return _clone


@pytest.fixture(scope="module")
def X32(fp32_encoder, prompts):
    """The fp32 encoder's vectors (n, d) of ``prompts``."""
    return fp32_encoder.encode(prompts)


@pytest.fixture(scope="module")
def X16(bf16_encoder, prompts):
    """The bf16 encoder's vectors (n, d) of ``prompts``."""
    return bf16_encoder.encode(prompts)


TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json")


@pytest.fixture(scope="session")
def tiny_source(tmp_path_factory):
    """A 1-layer, 32-wide random BERT with MiniLM's tokenizer (a stand-in source folder)."""
    import torch
    from transformers import BertConfig, BertModel

    folder = tmp_path_factory.mktemp("tiny-bert")
    for name in TOKENIZER_FILES:
        shutil.copy(default_model_path() / name, folder / name)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64)
    BertModel(config).eval().save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def built(tiny_source, tmp_path_factory):
    """One distilled tiny static model (16 dims) in a session cache folder."""
    cache = tmp_path_factory.mktemp("static-cache")
    enc = StaticEncoder(16, source=tiny_source, cache_dir=cache)
    enc.ensure()
    assert enc.distilled
    return enc
